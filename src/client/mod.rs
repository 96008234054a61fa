//! The client side of ringraft: a blocking Rust client over the client protocol
//! ([`crate::net::client_wire`]).

#![warn(missing_docs)]

mod blocking;

pub use crate::engine::Committed;
pub use blocking::{CallError, Client, NodeAdminStatus, NodeStats};
