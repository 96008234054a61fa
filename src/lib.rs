pub mod api;
pub mod batch;
pub mod chaos;
pub mod check;
pub mod cli;
pub mod client;
pub mod constants;
pub mod core;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod kv;
pub mod loadgen;
pub mod log;
pub mod net;
pub mod shard;
pub mod sim;
pub mod types;
