pub mod batch;
pub mod cli;
pub mod core;
pub mod log;
pub mod sim;
pub mod types;
