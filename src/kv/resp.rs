//! RESP values, their encoding in either protocol version, and the translation of the kv's
//! internal RESP2 replies for a RESP3 connection.
//!
//! [`Value`] is a whole reply or request as a tree; the `put_*` writers append one element
//! without building a tree (the state machine writes its outputs with them). Inside the kv
//! (state machine outputs, forwarded replies, merged parts) every reply is canonical RESP2:
//! `+simple`, `-error`, `:integer`, `$len` bulk strings, `*len` arrays, `$-1` for a nil bulk
//! string and `*-1` for a nil array. A reply takes its connection's [`Protocol`] only on the
//! way out ([`Value::render`], [`for_protocol`]).
//!
//! Invariants:
//! - Simple strings and errors never contain `\r` or `\n`: the writers replace them by spaces,
//!   so an encoded value always parses back as one value.
//! - RESP2 rendering is the internal form: a map is a flat array of keys and values, a
//!   verbatim string a bulk string of its text. RESP3 rendering writes both nils as `_`, maps
//!   as `%`, verbatim strings as `=` (with their 3-byte format); everything else is the same
//!   bytes in both versions.
//! - The store's outputs hold no maps or verbatim strings, so the RESP3 form of an internal
//!   RESP2 reply differs from it only in its nils, and [`for_protocol`] derives it exactly.

use bytes::Bytes;

use crate::kv::parse::{parse_value, REPLY_LIMITS};

/// The protocol version a connection speaks (chosen with `HELLO 2` / `HELLO 3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Every connection starts in RESP2.
    #[default]
    Resp2,
    /// After `HELLO 3`: nils are `_`, maps `%`, verbatim strings `=`.
    Resp3,
}

impl Protocol {
    /// The version number HELLO takes and reports.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }

    /// The protocol of HELLO's version number, if it is one spoken here.
    pub fn from_version(version: i64) -> Option<Protocol> {
        match version {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => None,
        }
    }
}

/// One RESP value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A simple string `+text` (written with any `\r` or `\n` replaced by a space).
    Simple(String),
    /// An error `-CODE text` (`ERR`, `NOAUTH`, …), written with line breaks replaced as in
    /// [`Value::Simple`].
    Error(String),
    /// An integer `:n`.
    Integer(i64),
    /// A bulk string `$len`: any bytes.
    Bulk(Bytes),
    /// The nil bulk string (a missing key): `$-1`, or `_` in RESP3.
    Nil,
    /// An array `*len` of values.
    Array(Vec<Value>),
    /// The nil array: `*-1`, or `_` in RESP3.
    NilArray,
    /// Pairs of keys and values: a flat array in RESP2, `%` in RESP3.
    Map(Vec<(Value, Value)>),
    /// Text for humans (INFO): a bulk string in RESP2, `=len` with `format:` in RESP3.
    Verbatim {
        /// The format RESP3 writes before the text, such as `txt`.
        format: [u8; 3],
        /// The text, without the format.
        text: Bytes,
    },
}

impl Value {
    /// A bulk string of `text`.
    pub fn text(text: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// The value's RESP2 encoding (the kv's internal form).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(Protocol::Resp2, &mut out);
        out
    }

    /// The value's encoding in `protocol`.
    pub fn render(&self, protocol: Protocol) -> Bytes {
        let mut out = Vec::new();
        self.encode_into(protocol, &mut out);
        Bytes::from(out)
    }

    /// Appends the value's encoding in `protocol` to `out`.
    pub fn encode_into(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Value::Simple(text) => put_simple(out, text),
            Value::Error(text) => put_error(out, text),
            Value::Integer(n) => put_integer(out, *n),
            Value::Bulk(bytes) => put_bulk(out, bytes),
            Value::Nil | Value::NilArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Value::Nil => put_nil(out),
            Value::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(items) => {
                put_array_header(out, items.len());
                for item in items {
                    item.encode_into(protocol, out);
                }
            }
            Value::Map(pairs) => {
                if resp3 {
                    put_header(out, b'%', pairs.len());
                } else {
                    put_array_header(out, pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode_into(protocol, out);
                    value.encode_into(protocol, out);
                }
            }
            Value::Verbatim { format, text } if resp3 => {
                put_header(out, b'=', format.len() + 1 + text.len());
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Value::Verbatim { text, .. } => put_bulk(out, text),
        }
    }
}

/// An internal RESP2 reply as its connection's `protocol` has it: unchanged in RESP2; in
/// RESP3 with its nils (at any depth) written `_`. Bytes that are not one whole RESP2 value
/// (never produced inside the kv) pass unchanged.
pub fn for_protocol(reply: Bytes, protocol: Protocol) -> Bytes {
    if protocol == Protocol::Resp2 {
        return reply;
    }
    match reply.first() {
        Some(b'$') if &reply[..] == b"$-1\r\n" => Bytes::from_static(b"_\r\n"),
        // An array is parsed and written anew only if it may hold a nil (the bytes of one can
        // also sit inside a bulk string, which the rewrite then leaves as it was).
        Some(b'*') if holds_nil_marker(&reply) => match parse_value(&reply, &REPLY_LIMITS) {
            Ok(Some((value, len))) if len == reply.len() => value.render(protocol),
            _ => reply,
        },
        _ => reply,
    }
}

/// Whether `reply` contains the bytes of a RESP2 nil (`$-1` or `*-1`).
fn holds_nil_marker(reply: &[u8]) -> bool {
    reply
        .windows(3)
        .any(|window| window == b"$-1" || window == b"*-1")
}

fn put_line(out: &mut Vec<u8>, prefix: u8, text: &str) {
    out.push(prefix);
    out.extend(text.bytes().map(|byte| {
        if byte == b'\r' || byte == b'\n' {
            b' '
        } else {
            byte
        }
    }));
    out.extend_from_slice(b"\r\n");
}

/// `+text`.
pub fn put_simple(out: &mut Vec<u8>, text: &str) {
    put_line(out, b'+', text);
}

/// `+OK`.
pub fn put_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

/// `-text`; by convention the text starts with an upper-case code (`ERR`, `WRONGTYPE`, …).
pub fn put_error(out: &mut Vec<u8>, text: &str) {
    put_line(out, b'-', text);
}

/// `:n`.
pub fn put_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `$len` and the bytes.
pub fn put_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `$-1`.
pub fn put_nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*len`; the caller appends `len` elements.
pub fn put_array_header(out: &mut Vec<u8>, len: usize) {
    put_header(out, b'*', len);
}

fn put_header(out: &mut Vec<u8>, prefix: u8, len: usize) {
    out.push(prefix);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An error reply as bytes.
pub fn error(text: &str) -> Bytes {
    let mut out = Vec::with_capacity(text.len() + 3);
    put_error(&mut out, text);
    Bytes::from(out)
}

/// `+OK` as bytes.
pub fn ok() -> Bytes {
    Bytes::from_static(b"+OK\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_kind() {
        let value = Value::Array(vec![
            Value::Simple("OK".into()),
            Value::Error("ERR bad\r\nthing".into()),
            Value::Integer(-42),
            Value::Bulk(Bytes::from_static(b"a\r\nb")),
            Value::Nil,
            Value::NilArray,
            Value::Array(vec![]),
        ]);
        assert_eq!(
            value.encode(),
            b"*7\r\n+OK\r\n-ERR bad  thing\r\n:-42\r\n$4\r\na\r\nb\r\n$-1\r\n*-1\r\n*0\r\n"
        );
        assert_eq!(
            value.render(Protocol::Resp3),
            &b"*7\r\n+OK\r\n-ERR bad  thing\r\n:-42\r\n$4\r\na\r\nb\r\n_\r\n_\r\n*0\r\n"[..]
        );
    }

    #[test]
    fn maps_and_verbatim_strings_take_each_protocols_form() {
        let value = Value::Map(vec![
            (Value::text("proto"), Value::Integer(3)),
            (
                Value::text("info"),
                Value::Verbatim {
                    format: *b"txt",
                    text: Bytes::from_static(b"a:1\r\n"),
                },
            ),
        ]);
        assert_eq!(
            value.render(Protocol::Resp2),
            &b"*4\r\n$5\r\nproto\r\n:3\r\n$4\r\ninfo\r\n$5\r\na:1\r\n\r\n"[..]
        );
        assert_eq!(
            value.render(Protocol::Resp3),
            &b"%2\r\n$5\r\nproto\r\n:3\r\n$4\r\ninfo\r\n=9\r\ntxt:a:1\r\n\r\n"[..]
        );
    }

    #[test]
    fn internal_replies_change_only_their_nils_for_resp3() {
        let resp3 = |reply: &'static [u8]| for_protocol(Bytes::from_static(reply), Protocol::Resp3);
        assert_eq!(resp3(b"$-1\r\n"), &b"_\r\n"[..]);
        assert_eq!(resp3(b"*-1\r\n"), &b"_\r\n"[..]);
        assert_eq!(
            resp3(b"*3\r\n$1\r\na\r\n$-1\r\n:2\r\n"),
            &b"*3\r\n$1\r\na\r\n_\r\n:2\r\n"[..]
        );
        for same in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":-1\r\n",
            b"$2\r\n-1\r\n",
            b"*1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"*2\r\n$3\r\n$-1\r\n:1\r\n",
        ] {
            assert_eq!(resp3(same), same);
        }
        let nil = Bytes::from_static(b"$-1\r\n");
        assert_eq!(for_protocol(nil.clone(), Protocol::Resp2), nil);
    }
}
