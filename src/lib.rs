pub mod batch;
pub mod cli;
pub mod core;
pub mod sim;
pub mod types;
