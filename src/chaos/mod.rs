//! The fault harness (`ringraft chaos`): real `ringraft kv` processes wired through
//! fault-injecting proxies ([`proxy`], [`cluster`]), a register workload recording a history
//! ([`workload`], over [`resp_client`]), a seeded fault schedule ([`faults`]) including disk
//! faults on stopped nodes ([`disk`]), a tmpfs to fill one node's disk ([`tmpfs`]), and the
//! run that ties them together and checks the history and the logs ([`runner`]).

pub mod cluster;
pub mod disk;
pub mod faults;
pub mod proxy;
pub mod resp_client;
pub mod runner;
pub mod tmpfs;
pub mod workload;
