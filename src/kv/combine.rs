//! Merging the per-group replies of a multi-key command into the client's one reply.
//!
//! Invariants: the merged reply is an error if any part's reply is an error (the first one, in
//! part order), and otherwise has the shape the command promises: `+OK` for MSET, one integer
//! for DEL/EXISTS/DBSIZE, one array in the order of the requested keys for MGET.

use bytes::Bytes;

use crate::kv::parse::{parse_value, REPLY_LIMITS};
use crate::kv::resp::{self, Value};

/// How to merge the replies of a command's parts (one part per group involved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Combine {
    /// One part: its reply is the answer.
    Single,
    /// MSET: `+OK` once every part said so.
    AllOk,
    /// DEL, EXISTS, DBSIZE: the sum of the parts' integers.
    Sum,
    /// MGET: part `p`'s array holds the values of the keys at `positions[p]`.
    Gather {
        /// For each part, in part order: the places in the request's key list of its keys.
        positions: Vec<Vec<usize>>,
        /// Number of keys requested: the length of the merged array.
        len: usize,
    },
}

/// The merged reply (`replies` in part order).
pub fn combine(how: &Combine, mut replies: Vec<Bytes>) -> Bytes {
    if let Some(error) = replies.iter().find(|reply| reply.first() == Some(&b'-')) {
        return error.clone();
    }
    if *how == Combine::Single && replies.len() == 1 {
        return replies.remove(0);
    }
    let values: Option<Vec<Value>> = replies
        .iter()
        .map(|reply| match parse_value(reply, &REPLY_LIMITS) {
            Ok(Some((value, len))) if len == reply.len() => Some(value),
            _ => None,
        })
        .collect();
    let Some(values) = values else {
        return resp::error("ERR internal: unreadable reply from a group");
    };
    let merged = match how {
        Combine::Single => None,
        Combine::AllOk => values
            .iter()
            .all(|value| *value == Value::Simple("OK".into()))
            .then(resp::ok),
        Combine::Sum => values
            .iter()
            .try_fold(0i64, |sum, value| match value {
                Value::Integer(n) => sum.checked_add(*n),
                _ => None,
            })
            .map(|sum| Bytes::from(Value::Integer(sum).encode())),
        Combine::Gather { positions, len } => gather(positions, *len, values),
    };
    merged.unwrap_or_else(|| resp::error("ERR internal: unexpected reply from a group"))
}

fn gather(positions: &[Vec<usize>], len: usize, values: Vec<Value>) -> Option<Bytes> {
    let mut slots = vec![None; len];
    for (value, positions) in values.into_iter().zip(positions) {
        let Value::Array(items) = value else {
            return None;
        };
        if items.len() != positions.len() {
            return None;
        }
        for (item, &position) in items.into_iter().zip(positions) {
            *slots.get_mut(position)? = Some(item);
        }
    }
    let items: Option<Vec<Value>> = slots.into_iter().collect();
    Some(Bytes::from(Value::Array(items?).encode()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn merges_each_shape() {
        assert_eq!(combine(&Combine::Single, vec![b(":1\r\n")]), b(":1\r\n"));
        assert_eq!(
            combine(&Combine::AllOk, vec![b("+OK\r\n"), b("+OK\r\n")]),
            b("+OK\r\n")
        );
        assert_eq!(
            combine(&Combine::Sum, vec![b(":1\r\n"), b(":2\r\n")]),
            b(":3\r\n")
        );
        let gather = Combine::Gather {
            positions: vec![vec![0, 2], vec![1]],
            len: 3,
        };
        assert_eq!(
            combine(
                &gather,
                vec![b("*2\r\n$1\r\na\r\n$-1\r\n"), b("*1\r\n$1\r\nb\r\n")]
            ),
            b("*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n")
        );
    }

    #[test]
    fn errors_and_odd_replies_become_errors() {
        assert_eq!(
            combine(
                &Combine::Sum,
                vec![b(":1\r\n"), b("-TRYAGAIN no leader\r\n")]
            ),
            b("-TRYAGAIN no leader\r\n")
        );
        assert!(combine(&Combine::Sum, vec![b("+OK\r\n"), b(":1\r\n")]).starts_with(b"-ERR"));
        assert!(combine(&Combine::AllOk, vec![b(":1\r\n"), b("+OK\r\n")]).starts_with(b"-ERR"));
        let gather = Combine::Gather {
            positions: vec![vec![0, 1]],
            len: 2,
        };
        assert!(combine(&gather, vec![b("*1\r\n$1\r\na\r\n")]).starts_with(b"-ERR"));
        assert!(combine(&Combine::Sum, vec![b(":1"), b(":1\r\n")]).starts_with(b"-ERR"));
    }
}
