pub mod batch;
pub mod log;
pub mod types;
