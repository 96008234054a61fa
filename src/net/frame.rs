//! Frames: the unit every connection (peer or client) carries.
//!
//! # Layout
//!
//! A frame is a 32-byte header, the body, then zero padding up to a multiple of 16 bytes.
//! All integers are little-endian.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 4    | magic `b"RRNF"` |
//! | 4      | 2    | frame format version ([`FRAME_FORMAT_VERSION`]) |
//! | 6      | 2    | kind ([`FrameKind`]) |
//! | 8      | 8    | body length in bytes, without padding |
//! | 16     | 4    | CRC-32 (IEEE, as `crc32fast` computes it) of the body |
//! | 20     | 8    | reserved, zero |
//! | 28     | 4    | CRC-32 of header bytes 0..28 |
//!
//! # Invariants
//!
//! - The header is checked in this order: magic, version, header CRC, reserved bytes, kind,
//!   length cap. The magic and version come first so that a peer speaking another protocol or
//!   another version gets that diagnosis rather than a checksum error; the header CRC comes
//!   before the length so that a corrupted length is never trusted.
//! - The length cap is checked from the header **before** any buffer is grown for the body: a
//!   decoder never holds more than `max(chunk, header + cap + padding)` bytes plus what the
//!   caller asks for in [`FrameDecoder::spare`].
//! - Every frame occupies a multiple of [`FRAME_ALIGN`] bytes on the wire. The decoder keeps
//!   the start of its unread data 16-byte aligned, so every frame body it returns is a
//!   zero-copy, 16-byte-aligned slice of its receive buffer (archives inside it can be accessed
//!   in place). Padding bytes must be zero.
//! - After the decoder returns an error the stream is out of sync: it keeps returning that
//!   error, and the connection must be closed.
//!
//! Returned bodies share the receive chunk they were read into: a body kept for long (an entry
//! batch held in a log cache) keeps its whole chunk (by default [`CHUNK_BYTES_DEFAULT`]) alive.

use bytes::{Bytes, BytesMut};

use crate::constants::{FRAME_ALIGN, FRAME_BYTES_MAX, FRAME_FORMAT_VERSION, FRAME_HEADER_BYTES};

/// The first four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"RRNF";

/// What a reader should ask [`FrameDecoder::spare`] for before each socket read. Asking for
/// more than the free tail of the current chunk makes the decoder allocate (and zero) a new
/// chunk, so a small request keeps the chunk in use until it is nearly full; the kernel hands
/// over whatever is buffered up to the region's size anyway.
pub const READ_SPARE_BYTES: usize = 16 << 10;

/// Default size of a decoder's receive chunk.
pub const CHUNK_BYTES_DEFAULT: usize = 64 << 10;

/// What a frame's body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum FrameKind {
    /// A [`crate::net::handshake::Hello`]: the first frame on a peer connection.
    Hello = 1,
    /// A [`crate::net::handshake::HelloReply`].
    HelloReply = 2,
    /// Raft messages of any number of groups from one node ([`crate::net::wire`]).
    Raft = 3,
    /// A piece of a snapshot file ([`crate::net::snapshot_wire::SnapshotChunk`]).
    SnapshotChunk = 4,
    /// How much of a snapshot a receiver holds ([`crate::net::snapshot_wire::SnapshotAck`]).
    SnapshotAck = 5,
    /// Pipelined client requests ([`crate::net::client_wire`]).
    ClientRequests = 16,
    /// Responses to client requests ([`crate::net::client_wire`]).
    ClientResponses = 17,
}

impl FrameKind {
    /// The kind with wire code `code`, if any.
    pub fn from_code(code: u16) -> Option<FrameKind> {
        Some(match code {
            1 => FrameKind::Hello,
            2 => FrameKind::HelloReply,
            3 => FrameKind::Raft,
            4 => FrameKind::SnapshotChunk,
            5 => FrameKind::SnapshotAck,
            16 => FrameKind::ClientRequests,
            17 => FrameKind::ClientResponses,
            _ => return None,
        })
    }

    /// The wire code of this kind.
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Why a byte stream could not be decoded into frames, or a frame could not be encoded. Every
/// decoding error means the stream is unusable and the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {found:02x?} (expected {FRAME_MAGIC:02x?}): not a ringraft peer or stream out of sync")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported frame format version {found} (this build speaks {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("frame header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("frame header reserved bytes are not zero")]
    ReservedNotZero,
    #[error("unknown frame kind {0}")]
    UnknownKind(u16),
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("frame body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BodyChecksum { stored: u32, computed: u32 },
    #[error("frame padding bytes are not zero")]
    PaddingNotZero,
}

/// A decoded frame. A non-empty `body` is [`FRAME_ALIGN`]-aligned in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub body: Bytes,
}

/// A parsed and checked header.
#[derive(Clone, Copy, Debug)]
struct Header {
    kind: FrameKind,
    body_len: usize,
    body_crc: u32,
}

/// `n` rounded up to a multiple of [`FRAME_ALIGN`].
pub const fn align_up(n: usize) -> usize {
    (n + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// Bytes a frame with a body of `body_len` bytes occupies on the wire.
pub const fn frame_wire_len(body_len: usize) -> usize {
    FRAME_HEADER_BYTES + align_up(body_len)
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and checks a header (`bytes` holds at least [`FRAME_HEADER_BYTES`]).
fn parse_header(bytes: &[u8], body_bytes_max: usize) -> Result<Header, FrameError> {
    let bytes = &bytes[..FRAME_HEADER_BYTES];
    let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let version = read_u16(bytes, 4);
    if version != FRAME_FORMAT_VERSION {
        return Err(FrameError::UnsupportedVersion {
            found: version,
            supported: FRAME_FORMAT_VERSION,
        });
    }
    let stored = read_u32(bytes, 28);
    let computed = crc32fast::hash(&bytes[..28]);
    if stored != computed {
        return Err(FrameError::HeaderChecksum { stored, computed });
    }
    if bytes[20..28].iter().any(|&b| b != 0) {
        return Err(FrameError::ReservedNotZero);
    }
    let code = read_u16(bytes, 6);
    let kind = FrameKind::from_code(code).ok_or(FrameError::UnknownKind(code))?;
    let len = read_u64(bytes, 8);
    if len > body_bytes_max as u64 {
        return Err(FrameError::TooLarge {
            len,
            max: body_bytes_max,
        });
    }
    Ok(Header {
        kind,
        body_len: len as usize,
        body_crc: read_u32(bytes, 16),
    })
}

/// Writes a header for a body at `out[start + 32 ..]` of `body_len` bytes.
fn write_header(out: &mut [u8], kind: FrameKind, body_len: usize, body_crc: u32) {
    let header = &mut out[..FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&FRAME_MAGIC);
    header[4..6].copy_from_slice(&FRAME_FORMAT_VERSION.to_le_bytes());
    header[6..8].copy_from_slice(&kind.code().to_le_bytes());
    header[8..16].copy_from_slice(&(body_len as u64).to_le_bytes());
    header[16..20].copy_from_slice(&body_crc.to_le_bytes());
    header[20..28].fill(0);
    let crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// A frame being written at the end of an output buffer: [`begin_frame`] reserves the header,
/// the caller appends the body to the same buffer, [`FrameBuilder::finish`] fills the header in.
#[derive(Debug)]
#[must_use = "a begun frame must be finished or abandoned"]
pub struct FrameBuilder {
    start: usize,
    kind: FrameKind,
}

/// Starts a frame of `kind` at the end of `out` (which may already hold other frames).
pub fn begin_frame(out: &mut Vec<u8>, kind: FrameKind) -> FrameBuilder {
    let start = out.len();
    out.resize(start + FRAME_HEADER_BYTES, 0);
    FrameBuilder { start, kind }
}

impl FrameBuilder {
    /// Position in `out` of the body's first byte; offsets inside the body are relative to it.
    pub fn body_start(&self) -> usize {
        self.start + FRAME_HEADER_BYTES
    }

    /// Body bytes written so far.
    pub fn body_len(&self, out: &[u8]) -> usize {
        out.len() - self.body_start()
    }

    /// Appends zeros until the body length is a multiple of [`FRAME_ALIGN`], and returns it:
    /// the next byte written lands at an aligned offset of the body.
    pub fn align_body(&self, out: &mut Vec<u8>) -> usize {
        let aligned = align_up(self.body_len(out));
        out.resize(self.body_start() + aligned, 0);
        aligned
    }

    /// Completes the frame (header, checksums, padding) and returns its wire length. A body
    /// over [`FRAME_BYTES_MAX`] is an error, and then the frame is removed from `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<usize, FrameError> {
        let body_len = self.body_len(out);
        if body_len > FRAME_BYTES_MAX {
            out.truncate(self.start);
            return Err(FrameError::TooLarge {
                len: body_len as u64,
                max: FRAME_BYTES_MAX,
            });
        }
        let crc = crc32fast::hash(&out[self.body_start()..]);
        write_header(&mut out[self.start..], self.kind, body_len, crc);
        out.resize(self.body_start() + align_up(body_len), 0);
        Ok(out.len() - self.start)
    }

    /// Removes the partly written frame from `out`.
    pub fn abandon(self, out: &mut Vec<u8>) {
        out.truncate(self.start);
    }
}

/// Appends one complete frame of `kind` holding `body` to `out`; returns its wire length.
pub fn encode_frame(kind: FrameKind, body: &[u8], out: &mut Vec<u8>) -> Result<usize, FrameError> {
    if body.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge {
            len: body.len() as u64,
            max: FRAME_BYTES_MAX,
        });
    }
    let builder = begin_frame(out, kind);
    out.extend_from_slice(body);
    builder.finish(out)
}

/// Incremental frame decoder for one byte stream.
///
/// ```text
/// loop {
///     let n = socket.read(decoder.spare(4096))?;   // 0 → peer closed
///     decoder.filled(n);
///     while let Some(frame) = decoder.next_frame()? { handle(frame) }
/// }
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    /// Receive buffer whose first byte is 16-byte aligned; `buf[..filled]` holds received bytes
    /// not yet returned as frames. Its length is its usable capacity (zero-initialised).
    buf: BytesMut,
    filled: usize,
    body_bytes_max: usize,
    chunk_bytes: usize,
    /// Header of the frame at the start of `buf`, once parsed.
    pending: Option<Header>,
    /// The first error; the stream cannot be resynchronised after it.
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

/// A zero-filled buffer of at least `len` bytes whose first byte is 16-byte aligned.
fn aligned_buffer(len: usize) -> BytesMut {
    let mut buf = BytesMut::zeroed(len + FRAME_ALIGN);
    let misalignment = buf.as_ptr().align_offset(FRAME_ALIGN);
    let _ = buf.split_to(misalignment);
    debug_assert_eq!(buf.as_ptr() as usize % FRAME_ALIGN, 0);
    buf
}

impl FrameDecoder {
    /// A decoder accepting bodies up to [`FRAME_BYTES_MAX`].
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_limits(FRAME_BYTES_MAX, CHUNK_BYTES_DEFAULT)
    }

    /// A decoder accepting bodies up to `body_bytes_max` (at most [`FRAME_BYTES_MAX`]) that
    /// reads into chunks of `chunk_bytes`.
    pub fn with_limits(body_bytes_max: usize, chunk_bytes: usize) -> FrameDecoder {
        assert!(
            body_bytes_max <= FRAME_BYTES_MAX,
            "frame limit above FRAME_BYTES_MAX"
        );
        let chunk_bytes = align_up(chunk_bytes.max(FRAME_HEADER_BYTES));
        FrameDecoder {
            buf: BytesMut::new(),
            filled: 0,
            body_bytes_max,
            chunk_bytes,
            pending: None,
            failed: None,
        }
    }

    /// The largest body this decoder accepts.
    pub fn body_bytes_max(&self) -> usize {
        self.body_bytes_max
    }

    /// Bytes of the current receive chunk (what the decoder holds allocated, apart from
    /// chunks still referenced by returned bodies).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Received bytes not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// A writable region of at least `at_least` bytes (and at least one) for the next read.
    /// When the header of an incomplete frame is known, the region is grown to hold the whole
    /// frame so that it arrives without further copies.
    pub fn spare(&mut self, at_least: usize) -> &mut [u8] {
        let mut needed = self.filled + at_least.max(1);
        if let Some(header) = self.pending {
            needed = needed.max(frame_wire_len(header.body_len));
        }
        if self.buf.len() < needed {
            let mut grown = aligned_buffer(needed.max(self.chunk_bytes));
            grown[..self.filled].copy_from_slice(&self.buf[..self.filled]);
            self.buf = grown;
        }
        &mut self.buf[self.filled..]
    }

    /// Records that the first `n` bytes of the last [`FrameDecoder::spare`] region were filled.
    pub fn filled(&mut self, n: usize) {
        assert!(
            self.filled + n <= self.buf.len(),
            "filled({n}) beyond the spare region"
        );
        self.filled += n;
    }

    /// Copies `bytes` into the decoder (for callers that do not read into [`Self::spare`]).
    pub fn push(&mut self, bytes: &[u8]) {
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or the error that makes
    /// this stream unusable.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.decode_one();
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn decode_one(&mut self) -> Result<Option<Frame>, FrameError> {
        let header = match self.pending {
            Some(header) => header,
            None => {
                if self.filled < FRAME_HEADER_BYTES {
                    return Ok(None);
                }
                let header = parse_header(&self.buf[..self.filled], self.body_bytes_max)?;
                self.pending = Some(header);
                header
            }
        };
        let wire_len = frame_wire_len(header.body_len);
        if self.filled < wire_len {
            return Ok(None);
        }
        let body_end = FRAME_HEADER_BYTES + header.body_len;
        if self.buf[body_end..wire_len].iter().any(|&b| b != 0) {
            return Err(FrameError::PaddingNotZero);
        }
        let computed = crc32fast::hash(&self.buf[FRAME_HEADER_BYTES..body_end]);
        if computed != header.body_crc {
            return Err(FrameError::BodyChecksum {
                stored: header.body_crc,
                computed,
            });
        }
        // Frames are whole multiples of the alignment, so the rest of `buf` stays aligned.
        let frame = self.buf.split_to(wire_len).freeze();
        self.filled -= wire_len;
        self.pending = None;
        let body = frame.slice(FRAME_HEADER_BYTES..body_end);
        debug_assert!(body.is_empty() || body.as_ptr() as usize % FRAME_ALIGN == 0);
        Ok(Some(Frame {
            kind: header.kind,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut decoder = FrameDecoder::new();
        decoder.push(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame()? {
            frames.push(frame);
        }
        assert_eq!(decoder.buffered(), 0, "trailing bytes");
        Ok(frames)
    }

    #[test]
    fn frames_round_trip_and_bodies_are_aligned() {
        let mut out = Vec::new();
        encode_frame(FrameKind::Raft, b"hello", &mut out).unwrap();
        encode_frame(FrameKind::Hello, b"", &mut out).unwrap();
        encode_frame(FrameKind::ClientRequests, &[7; 100], &mut out).unwrap();
        assert_eq!(out.len(), 48 + 32 + 32 + 112);
        let frames = decode_all(&out).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].kind, FrameKind::Raft);
        assert_eq!(&frames[0].body[..], b"hello");
        assert!(frames[1].body.is_empty());
        assert_eq!(&frames[2].body[..], &[7; 100][..]);
        for frame in &frames {
            assert!(frame.body.is_empty() || frame.body.as_ptr() as usize % FRAME_ALIGN == 0);
        }
    }

    #[test]
    fn byte_by_byte_delivery_yields_the_same_frames() {
        let mut out = Vec::new();
        for n in 0..40 {
            encode_frame(FrameKind::Raft, &vec![n as u8; n * 7], &mut out).unwrap();
        }
        let mut decoder = FrameDecoder::with_limits(FRAME_BYTES_MAX, 64);
        let mut frames = Vec::new();
        for &byte in &out {
            decoder.spare(1)[0] = byte;
            decoder.filled(1);
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 40);
        for (n, frame) in frames.iter().enumerate() {
            assert_eq!(frame.body.len(), n * 7);
            assert!(frame.body.iter().all(|&b| b == n as u8));
        }
    }

    #[test]
    fn oversize_length_is_rejected_from_the_header() {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        write_header(&mut header, FrameKind::Raft, 0, 0);
        header[8..16].copy_from_slice(&(1u64 << 63).to_le_bytes());
        let crc = crc32fast::hash(&header[..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
        let mut decoder = FrameDecoder::new();
        decoder.push(&header);
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                len: 1 << 63,
                max: FRAME_BYTES_MAX
            })
        );
        // The error sticks.
        assert!(decoder.next_frame().is_err());
    }

    #[test]
    fn builder_aligns_and_rejects_oversize() {
        let mut out = vec![1, 2, 3];
        let builder = begin_frame(&mut out, FrameKind::Raft);
        out.push(9);
        assert_eq!(builder.align_body(&mut out), 16);
        assert_eq!(builder.body_len(&out), 16);
        builder.finish(&mut out).unwrap();
        let builder = begin_frame(&mut out, FrameKind::Raft);
        let before = builder.body_start() - FRAME_HEADER_BYTES;
        out.resize(out.len() + FRAME_BYTES_MAX + 1, 0);
        assert!(matches!(
            builder.finish(&mut out),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(out.len(), before);
    }
}
