pub mod engine;
pub mod link;
pub mod mailbox;
