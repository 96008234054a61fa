pub mod batch;
pub mod types;
