//! The client side of ringraft: the wire protocol and a blocking Rust client.

mod blocking;
pub mod protocol;

pub use blocking::{CallError, Client, Committed, NodeAdminStatus, NodeStats};
