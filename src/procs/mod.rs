//! Running nodes as processes on this machine: spawning a local cluster, the flags a spawned
//! node understands, and loopback ports. `ringraft bench`, `cluster`, `chaos` and the process
//! tests build on it; nothing here parses a command line of its own.

pub mod flags;
pub mod local_cluster;
pub mod ports;

pub use flags::{parse_members, FsyncMode, LogFormat};
pub use local_cluster::{die_with_parent, stop_gracefully, LocalCluster, LocalClusterSpec};
pub use ports::{free_port_block, PORT_BLOCK};
