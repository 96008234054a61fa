//! Loopback ports for local clusters.

/// The first port of a block of [`PORT_BLOCK`] free loopback ports for a local cluster.
///
/// Blocks come from below the kernel's ephemeral range (so outgoing connections never take a
/// node's port while it restarts), start at a point derived from the process id, and are
/// handed out in turn within a process, so concurrent clusters of one test run never share
/// ports.
pub fn free_port_block() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const BLOCKS: u16 = 50;
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let _ = NEXT.compare_exchange(
        u16::MAX,
        (std::process::id() % BLOCKS as u32) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..BLOCKS {
        let block = NEXT.fetch_add(1, Ordering::Relaxed) % BLOCKS;
        let base = FIRST + block * PORT_BLOCK;
        let free = (0..PORT_BLOCK)
            .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if free {
            return base;
        }
    }
    FIRST
}

/// Ports one local cluster may use (nodes at `base + 20 i`, up to 9 nodes of 10 shards; RESP
/// ports of key-value nodes at `base + 200 + i`; metrics ports at `base + 220 + i`).
pub const PORT_BLOCK: u16 = 240;
