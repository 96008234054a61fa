//! Client side of ringraft: the client protocol (and, later, the Rust client).

pub mod protocol;
