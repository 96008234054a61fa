//! Limits shared by the network codecs, with the relations between them checked at compile time.
//!
//! Every cap that bounds what a peer or a client can make this node allocate is here. The
//! relations asserted below keep the limits consistent: any message the core may produce fits in
//! one frame, and any client payload the protocol accepts fits in one entry batch.

/// Format version written in (and required of) every frame header.
pub const FRAME_FORMAT_VERSION: u16 = 1;

/// Newest protocol version this build speaks (announced in the handshake).
pub const PROTOCOL_VERSION: u16 = 1;

/// Oldest protocol version this build accepts from a peer.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// Bytes of the fixed frame header.
pub const FRAME_HEADER_BYTES: usize = 32;

/// Alignment of frame starts and frame bodies (and of batch bodies inside Raft frames).
pub const FRAME_ALIGN: usize = 16;

/// Largest frame body a decoder accepts by default, and the most an encoder writes. The header
/// and the padding are not counted.
pub const FRAME_BYTES_MAX: usize = 8 << 20;

/// Largest encoded body of one entry batch a proposer builds.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

/// Batch body bytes a leader puts in one AppendEntries (at least one batch is always sent, so
/// one message may carry up to `max(MESSAGE_BYTES_MAX, BATCH_BYTES_MAX)` body bytes). This is
/// the default of `core::Config::message_bytes_max`.
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;

/// Largest number of snapshot file bytes one `SnapshotChunk` frame carries
/// ([`crate::net::snapshot_wire`]).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1 << 20;

/// Largest payload of one client proposal.
pub const CLIENT_PAYLOAD_BYTES_MAX: usize = 512 << 10;

/// Largest state-machine output returned to a client in one `Committed` response.
pub const CLIENT_OUTPUT_BYTES_MAX: usize = 512 << 10;

/// Largest leader client address carried in a `NotLeader` error.
pub const CLIENT_ADDR_BYTES_MAX: usize = 256;

/// Largest text of an `Internal` client error (longer texts are cut on a character boundary).
pub const CLIENT_ERROR_TEXT_BYTES_MAX: usize = 1024;

/// Largest term and log index a peer may send. Real terms grow by one per election and indexes
/// by one per entry, so this is never reached; refusing larger values keeps `term + 1` and
/// `index + count` from overflowing on input from the network.
pub const TERM_MAX: u64 = 1 << 62;
/// See [`TERM_MAX`].
pub const INDEX_MAX: u64 = 1 << 62;

/// Fixed bytes a Raft frame spends besides batch bodies, per frame and per message, and per
/// batch (descriptor plus worst-case alignment padding); see `net::wire`.
pub const WIRE_FRAME_OVERHEAD_BYTES: usize = 16;
/// See [`WIRE_FRAME_OVERHEAD_BYTES`].
pub const WIRE_MESSAGE_OVERHEAD_BYTES: usize = 64;
/// See [`WIRE_FRAME_OVERHEAD_BYTES`].
pub const WIRE_BATCH_OVERHEAD_BYTES: usize = 32 + FRAME_ALIGN - 1;

/// Batches of one AppendEntries the worst case below allows for (a batch holds at least one
/// entry of at least 8 archived bytes, plus the body's own root, so this is generous).
const WORST_CASE_BATCHES_PER_MESSAGE: usize = 1024;

const _: () = {
    assert!(FRAME_HEADER_BYTES % FRAME_ALIGN == 0);
    assert!(FRAME_ALIGN == crate::batch::BODY_ALIGN);
    assert!(FRAME_BYTES_MAX % FRAME_ALIGN == 0);
    // Offsets and lengths inside a frame body are written as u32.
    assert!(FRAME_BYTES_MAX + FRAME_HEADER_BYTES + FRAME_ALIGN <= u32::MAX as usize);
    assert!(PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION);
    // The largest AppendEntries the core may build fits in one frame.
    let batch_bytes = if MESSAGE_BYTES_MAX > BATCH_BYTES_MAX {
        MESSAGE_BYTES_MAX
    } else {
        BATCH_BYTES_MAX
    };
    assert!(
        WIRE_FRAME_OVERHEAD_BYTES
            + WIRE_MESSAGE_OVERHEAD_BYTES
            + WORST_CASE_BATCHES_PER_MESSAGE * WIRE_BATCH_OVERHEAD_BYTES
            + batch_bytes
            < FRAME_BYTES_MAX
    );
    // A client payload (plus its archive overhead) fits in one batch, and a full-size request
    // or response fits in one client frame.
    assert!(CLIENT_PAYLOAD_BYTES_MAX + 4096 <= BATCH_BYTES_MAX);
    assert!(CLIENT_PAYLOAD_BYTES_MAX + 4096 <= FRAME_BYTES_MAX);
    assert!(
        CLIENT_OUTPUT_BYTES_MAX + CLIENT_ADDR_BYTES_MAX + CLIENT_ERROR_TEXT_BYTES_MAX + 4096
            <= FRAME_BYTES_MAX
    );
    assert!(CLIENT_ADDR_BYTES_MAX <= u16::MAX as usize);
    // A full snapshot chunk and its fixed fields fit in one frame.
    assert!(SNAPSHOT_CHUNK_BYTES_MAX + 64 <= FRAME_BYTES_MAX);
    assert!(SNAPSHOT_CHUNK_BYTES_MAX <= u32::MAX as usize);
};
