pub mod batch;
pub mod core;
pub mod types;
