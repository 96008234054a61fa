//! RESP2 values and their encoding.
//!
//! [`Value`] is a whole reply or request as a tree; the `put_*` writers append one element
//! without building a tree (the state machine writes its outputs with them). Every writer
//! emits canonical RESP2: `+simple`, `-error`, `:integer`, `$len` bulk strings, `*len` arrays,
//! `$-1` for a nil bulk string and `*-1` for a nil array. Simple strings and errors never
//! contain `\r` or `\n`: the writers replace them by spaces, so an encoded value always parses
//! back as one value.

use bytes::Bytes;

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// `$-1`: the nil bulk string (a missing key).
    Nil,
    Array(Vec<Value>),
    /// `*-1`: the nil array.
    NilArray,
}

impl Value {
    /// The value's encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the value's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(text) => put_simple(out, text),
            Value::Error(text) => put_error(out, text),
            Value::Integer(n) => put_integer(out, *n),
            Value::Bulk(bytes) => put_bulk(out, bytes),
            Value::Nil => put_nil(out),
            Value::Array(items) => {
                put_array_header(out, items.len());
                for item in items {
                    item.encode_into(out);
                }
            }
            Value::NilArray => out.extend_from_slice(b"*-1\r\n"),
        }
    }
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
    out.push(b'*');
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
    }
}
