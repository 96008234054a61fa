//! Incremental RESP2 decoding of requests and replies, with limits.
//!
//! The decoders look at the bytes received so far and either return one complete element and
//! the bytes it spans, say that more bytes are needed (`Ok(None)`), or fail. They keep no
//! state between calls: a caller appends what it reads and asks again, and pipelined
//! requests are taken off the front of the buffer one at a time.
//!
//! Invariants:
//! - Nothing is allocated or waited for beyond the [`Limits`]: a length is checked against its
//!   cap, and against the total cap, before any byte of the element it announces is awaited, and
//!   a line (a header or an inline request) must end within its cap. So the bytes a caller
//!   buffers for one incomplete element never exceed `total_bytes_max` plus one header line.
//! - Any byte sequence yields `Ok` or a [`ProtocolError`]; nothing panics. A `ProtocolError`
//!   means the stream cannot be resynchronised (the position of the next element is unknown).
//! - Lines end at `\n`, with an optional `\r` before it; the bytes of a bulk string must be
//!   followed by exactly `\r\n`.

use bytes::{Bytes, BytesMut};

use crate::kv::resp::Value;

/// Caps on what one element may announce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string.
    pub bulk_bytes_max: usize,
    /// Most elements in one array.
    pub array_len_max: usize,
    /// Deepest nesting of arrays (1: an array of scalars).
    pub depth_max: usize,
    /// Longest simple string, error or inline request line.
    pub line_bytes_max: usize,
    /// Most bytes one complete element may span.
    pub total_bytes_max: usize,
}

/// Longest bulk string a client may send, and the longest value the store keeps.
pub const BULK_BYTES_MAX: usize = 512 << 10;

/// Limits on a client's request: an array of at most 65,536 bulk strings of at most 512 KiB,
/// 4 MiB in all, or an inline line of at most 64 KiB.
pub const REQUEST_LIMITS: Limits = Limits {
    bulk_bytes_max: BULK_BYTES_MAX,
    array_len_max: 1 << 16,
    depth_max: 1,
    line_bytes_max: 64 << 10,
    total_bytes_max: 4 << 20,
};

/// Limits on a reply read from another node's RESP port (a forwarded request's answer).
pub const REPLY_LIMITS: Limits = Limits {
    bulk_bytes_max: BULK_BYTES_MAX,
    array_len_max: 1 << 16,
    depth_max: 4,
    line_bytes_max: 64 << 10,
    total_bytes_max: 256 << 20,
};

/// Longest header line (`*`, `$` or `:` and a 64-bit integer).
const HEADER_LINE_MAX: usize = 24;

/// Why a stream cannot be read on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An element starts with a byte that is not a RESP2 type (`+`, `-`, `:`, `$`, `*`).
    #[error("Protocol error: unknown type byte 0x{0:02x}")]
    UnknownType(u8),
    /// An integer or a length is not a canonical decimal that fits an `i64`.
    #[error("Protocol error: invalid integer or length")]
    BadInteger,
    /// A negative length other than -1, or a nil (`$-1`, `*-1`) where a request needs a
    /// bulk string or an array.
    #[error("Protocol error: invalid bulk length")]
    BadLength,
    /// A bulk string announces more bytes than [`Limits::bulk_bytes_max`].
    #[error("Protocol error: bulk string of {len} bytes exceeds the limit of {max}")]
    BulkTooLong {
        /// The announced length, in bytes.
        len: u64,
        /// The limit, in bytes.
        max: usize,
    },
    /// An array announces more elements than [`Limits::array_len_max`].
    #[error("Protocol error: array of {len} elements exceeds the limit of {max}")]
    ArrayTooLong {
        /// The announced number of elements.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// Arrays are nested deeper than [`Limits::depth_max`] (the limit given).
    #[error("Protocol error: arrays nested deeper than {0}")]
    TooDeep(usize),
    /// A line (a header, simple string, error or inline request) does not end within its
    /// limit of this many bytes.
    #[error("Protocol error: line longer than {0} bytes")]
    LineTooLong(usize),
    /// A bulk string's bytes are not followed by exactly `\r\n`.
    #[error("Protocol error: bulk string not followed by CRLF")]
    MissingCrlf,
    /// The element would span more than [`Limits::total_bytes_max`] bytes (the limit given).
    #[error("Protocol error: request larger than {0} bytes")]
    TooLarge(usize),
    /// An element of a request's array is not a bulk string (the type byte found instead).
    #[error("Protocol error: expected '$', got '{0}'")]
    NotBulk(char),
}

/// Takes the next request off the front of `buf`: its arguments, zero-copy slices of the
/// received bytes. Empty requests (`*0`, blank inline lines) are skipped.
pub fn next_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        let Some((ranges, consumed)) = scan_request(buf, limits)? else {
            return Ok(None);
        };
        let frame = buf.split_to(consumed).freeze();
        if !ranges.is_empty() {
            return Ok(Some(
                ranges
                    .into_iter()
                    .map(|(start, end)| frame.slice(start..end))
                    .collect(),
            ));
        }
    }
}

/// The first complete value in `buf` and the bytes it spans.
pub fn parse_value(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut cursor = Cursor::new(buf, limits, true);
    Ok(cursor.value(0)?.map(|value| (value, cursor.pos)))
}

/// The bytes the first complete value in `buf` spans (validated as [`parse_value`] would).
pub fn value_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    let mut cursor = Cursor::new(buf, limits, false);
    Ok(cursor.value(0)?.map(|_| cursor.pos))
}

/// Argument ranges of the first request in `buf` and the bytes it spans.
type Scanned = (Vec<(usize, usize)>, usize);

fn scan_request(buf: &[u8], limits: &Limits) -> Result<Option<Scanned>, ProtocolError> {
    let mut cursor = Cursor::new(buf, limits, false);
    match buf.first() {
        None => Ok(None),
        Some(b'*') => {
            cursor.pos = 1;
            let Some(len) = cursor.integer()? else {
                return Ok(None);
            };
            let len = cursor.array_len(len)?;
            let mut args = Vec::with_capacity(len.min(64));
            for _ in 0..len {
                match buf.get(cursor.pos) {
                    None => return Ok(None),
                    Some(b'$') => cursor.pos += 1,
                    Some(&other) => return Err(ProtocolError::NotBulk(other as char)),
                }
                match cursor.bulk()? {
                    None => return Ok(None),
                    Some(None) => return Err(ProtocolError::BadLength),
                    Some(Some(range)) => args.push(range),
                }
            }
            Ok(Some((args, cursor.pos)))
        }
        Some(_) => {
            let Some((start, end)) = cursor.line(limits.line_bytes_max)? else {
                return Ok(None);
            };
            let mut args = Vec::new();
            let mut at = start;
            for word in buf[start..end].split(u8::is_ascii_whitespace) {
                if !word.is_empty() {
                    args.push((at, at + word.len()));
                }
                at += word.len() + 1;
            }
            Ok(Some((args, cursor.pos)))
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    /// Whether to build [`Value`]s (otherwise only validate and measure).
    build: bool,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], limits: &'a Limits, build: bool) -> Self {
        Cursor {
            buf,
            pos: 0,
            limits,
            build,
        }
    }

    /// The value at the cursor (`Value::Nil` stands for every value when not building).
    fn value(&mut self, depth: usize) -> Result<Option<Value>, ProtocolError> {
        let Some(&tag) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let value = match tag {
            b'+' | b'-' => {
                let Some((start, end)) = self.line(self.limits.line_bytes_max)? else {
                    return Ok(None);
                };
                let line = &self.buf[start..end];
                match (self.build, tag) {
                    (false, _) => Value::Nil,
                    (true, b'+') => Value::Simple(text(line)),
                    (true, _) => Value::Error(text(line)),
                }
            }
            b':' => match self.integer()? {
                None => return Ok(None),
                Some(n) => Value::Integer(n),
            },
            b'$' => match self.bulk()? {
                None => return Ok(None),
                Some(None) => Value::Nil,
                Some(Some((start, end))) if self.build => {
                    Value::Bulk(Bytes::copy_from_slice(&self.buf[start..end]))
                }
                Some(Some(_)) => Value::Nil,
            },
            b'*' => {
                let Some(len) = self.integer()? else {
                    return Ok(None);
                };
                if len == -1 {
                    return Ok(Some(Value::NilArray));
                }
                let len = self.array_len(len)?;
                if depth >= self.limits.depth_max {
                    return Err(ProtocolError::TooDeep(self.limits.depth_max));
                }
                let mut items = Vec::with_capacity(if self.build { len.min(64) } else { 0 });
                for _ in 0..len {
                    match self.value(depth + 1)? {
                        None => return Ok(None),
                        Some(item) if self.build => items.push(item),
                        Some(_) => {}
                    }
                }
                Value::Array(items)
            }
            other => return Err(ProtocolError::UnknownType(other)),
        };
        Ok(Some(value))
    }

    /// The line at the cursor as a range without its end (`\n` or `\r\n`), moving past it.
    fn line(&mut self, max: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(max + 2)];
        let Some(newline) = window.iter().position(|&byte| byte == b'\n') else {
            return if rest.len() > max + 1 {
                Err(ProtocolError::LineTooLong(max))
            } else {
                Ok(None)
            };
        };
        let end = if newline > 0 && window[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        if end > max {
            return Err(ProtocolError::LineTooLong(max));
        }
        let start = self.pos;
        self.pos += newline + 1;
        self.check_total()?;
        Ok(Some((start, start + end)))
    }

    /// A header line holding a signed decimal integer.
    fn integer(&mut self) -> Result<Option<i64>, ProtocolError> {
        let Some((start, end)) = self.line(HEADER_LINE_MAX)? else {
            return Ok(None);
        };
        parse_integer(&self.buf[start..end])
            .map(Some)
            .ok_or(ProtocolError::BadInteger)
    }

    fn array_len(&self, len: i64) -> Result<usize, ProtocolError> {
        if len < 0 {
            return Err(ProtocolError::BadLength);
        }
        if len as u64 > self.limits.array_len_max as u64 {
            return Err(ProtocolError::ArrayTooLong {
                len: len as u64,
                max: self.limits.array_len_max,
            });
        }
        Ok(len as usize)
    }

    /// The rest of a bulk string after its `$`: `Some(None)` for the nil bulk string.
    #[allow(clippy::type_complexity)]
    fn bulk(&mut self) -> Result<Option<Option<(usize, usize)>>, ProtocolError> {
        let Some(len) = self.integer()? else {
            return Ok(None);
        };
        if len == -1 {
            return Ok(Some(None));
        }
        if len < 0 {
            return Err(ProtocolError::BadLength);
        }
        if len as u64 > self.limits.bulk_bytes_max as u64 {
            return Err(ProtocolError::BulkTooLong {
                len: len as u64,
                max: self.limits.bulk_bytes_max,
            });
        }
        let start = self.pos;
        let end = start + len as usize;
        if end + 2 > self.limits.total_bytes_max {
            return Err(ProtocolError::TooLarge(self.limits.total_bytes_max));
        }
        if self.buf.len() < end + 2 {
            return Ok(None);
        }
        if &self.buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        self.pos = end + 2;
        Ok(Some(Some((start, end))))
    }

    fn check_total(&self) -> Result<(), ProtocolError> {
        if self.pos > self.limits.total_bytes_max {
            Err(ProtocolError::TooLarge(self.limits.total_bytes_max))
        } else {
            Ok(())
        }
    }
}

/// A canonical signed decimal (`-` then digits, no `+`, no spaces) that fits an `i64`.
pub fn parse_integer(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn requests(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut all = Vec::new();
        while let Some(args) = next_request(&mut buf, &REQUEST_LIMITS)? {
            all.push(args);
        }
        Ok(all)
    }

    #[test]
    fn takes_pipelined_array_and_inline_requests() {
        let all = requests(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\r\nPING  hi\r\n*0\r\n*1\r\n$4\r\nPI")
            .unwrap();
        assert_eq!(all, vec![vec!["GET", "k"], vec!["PING", "hi"]]);
    }

    #[test]
    fn a_request_split_at_every_byte_waits_then_completes() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(
                next_request(&mut buf, &REQUEST_LIMITS),
                Ok(None),
                "cut {cut}"
            );
            buf.extend_from_slice(&input[cut..]);
            let args = next_request(&mut buf, &REQUEST_LIMITS).unwrap().unwrap();
            assert_eq!(args, vec!["SET", "key", "va\r\nl"]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn refuses_oversized_and_malformed_requests_before_their_bytes_arrive() {
        let cases: [(&[u8], ProtocolError); 7] = [
            (
                b"*1\r\n$524289\r\n",
                ProtocolError::BulkTooLong {
                    len: 524_289,
                    max: BULK_BYTES_MAX,
                },
            ),
            (
                b"*65537\r\n",
                ProtocolError::ArrayTooLong {
                    len: 65_537,
                    max: 1 << 16,
                },
            ),
            (b"*1\r\n$x\r\n", ProtocolError::BadInteger),
            (b"*1\r\n$-2\r\n", ProtocolError::BadLength),
            (b"*1\r\n:1\r\n", ProtocolError::NotBulk(':')),
            (b"*1\r\n$1\r\nab\r\n", ProtocolError::MissingCrlf),
            (&[b'*'; 40], ProtocolError::LineTooLong(HEADER_LINE_MAX)),
        ];
        for (input, expected) in cases {
            assert_eq!(requests(input), Err(expected), "{input:?}");
        }
        let long_inline = vec![b'a'; REQUEST_LIMITS.line_bytes_max + 2];
        assert_eq!(
            requests(&long_inline),
            Err(ProtocolError::LineTooLong(REQUEST_LIMITS.line_bytes_max))
        );
        let mut total = b"*9\r\n".to_vec();
        for _ in 0..8 {
            total.extend_from_slice(b"$524288\r\n");
            total.extend(std::iter::repeat_n(b'x', 524_288));
            total.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            requests(&total),
            Err(ProtocolError::TooLarge(REQUEST_LIMITS.total_bytes_max))
        );
    }

    #[test]
    fn integers_are_canonical() {
        assert_eq!(parse_integer(b"-12"), Some(-12));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1e3",
        ] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        let line = "[^\r\n]{0,12}";
        let leaf = prop_oneof![
            line.prop_map(Value::Simple),
            line.prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Bulk(b.into())),
            Just(Value::Nil),
            Just(Value::NilArray),
        ];
        leaf.prop_recursive(3, 40, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
        })
    }

    proptest! {
        #[test]
        fn values_round_trip_and_every_prefix_is_incomplete(value in value_strategy()) {
            let encoded = value.encode();
            prop_assert_eq!(parse_value(&encoded, &REPLY_LIMITS), Ok(Some((value, encoded.len()))));
            prop_assert_eq!(value_len(&encoded, &REPLY_LIMITS), Ok(Some(encoded.len())));
            for cut in 0..encoded.len() {
                prop_assert_eq!(value_len(&encoded[..cut], &REPLY_LIMITS), Ok(None));
            }
        }

        #[test]
        fn requests_round_trip_in_any_chunking(
            commands in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5), 1..6),
            chunk in 1usize..50,
        ) {
            let mut wire = Vec::new();
            for args in &commands {
                Value::Array(args.iter().map(|a| Value::Bulk(a.clone().into())).collect())
                    .encode_into(crate::kv::resp::Protocol::Resp2, &mut wire);
            }
            let mut buf = BytesMut::new();
            let mut seen = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(args) = next_request(&mut buf, &REQUEST_LIMITS).unwrap() {
                    seen.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(seen, commands);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = next_request(&mut buf, &REQUEST_LIMITS) {}
            let _ = parse_value(&bytes, &REPLY_LIMITS);
            let _ = value_len(&bytes, &REPLY_LIMITS);
        }

        #[test]
        fn random_bytes_after_a_type_byte_never_panic(
            tag in prop_oneof![Just(b'*'), Just(b'$'), Just(b'+'), Just(b':')],
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'$'), Just(b'*'), Just(b'-'), b'0'..=b'9'], 0..60),
        ) {
            let mut input = vec![tag];
            input.extend(bytes);
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = next_request(&mut buf, &REQUEST_LIMITS) {}
            let _ = parse_value(&input, &REPLY_LIMITS);
        }
    }
}
