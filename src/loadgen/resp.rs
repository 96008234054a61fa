//! `ringraft bench --protocol resp`: SET/GET over RESP2 against `ringraft kv` nodes.
//!
//! - Keys are `key:<n>` for `n` below `--keyspace`; [`group_keys`] sorts them by the group
//!   `ringraft kv` routes them to, so a connection assigned to a group sends only that group's
//!   keys, to that group's leader (nothing is forwarded while leadership stays put).
//! - Each request is a GET with probability `--get-percent` %, a SET of a `--payload`-byte
//!   value otherwise, on a key drawn uniformly from the connection's group.
//! - RESP answers come back in order on a connection, so the n-th answer is request id n.
//!   An error answer (`-ERR`, `-MOVED`, …) counts as failed; any other value is a success.
//! - Leaders are found with INFO (`group<g>:role=leader,…` lines), which needs only the RESP
//!   addresses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::kv::hashing::group_of;
use crate::kv::parse::{parse_value, value_len, Limits, BULK_BYTES_MAX};
use crate::kv::resp::{put_array_header, put_bulk, Value};
use crate::loadgen::codec::{Answer, Codec, Outcome};
use crate::tls::{BlockingIo, ClientTls};
use crate::types::{GroupId, NodeId};

/// What an answer may announce: a GET's value at most.
const ANSWER_LIMITS: Limits = Limits {
    bulk_bytes_max: BULK_BYTES_MAX,
    array_len_max: 1 << 10,
    depth_max: 2,
    line_bytes_max: 64 << 10,
    total_bytes_max: 2 * BULK_BYTES_MAX,
};

/// Bytes offered to each read.
const READ_BYTES: usize = 64 << 10;

/// The keys of the keyspace, by group (`result[g]` for group `g`).
pub fn group_keys(keyspace: u64, groups: u32) -> Result<Vec<Arc<Vec<Bytes>>>, String> {
    let mut keys = vec![Vec::new(); groups as usize];
    for n in 0..keyspace {
        let key = format!("key:{n}");
        keys[group_of(key.as_bytes(), groups).0 as usize].push(Bytes::from(key));
    }
    if let Some(group) = keys.iter().position(Vec::is_empty) {
        return Err(format!(
            "--keyspace {keyspace} leaves group {group} without a key; use more keys"
        ));
    }
    Ok(keys.into_iter().map(Arc::new).collect())
}

/// SETs and GETs of one group's keys.
pub struct RespCodec {
    keys: Arc<Vec<Bytes>>,
    value: Bytes,
    get_percent: u8,
    rng: Xoshiro256PlusPlus,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    answered: u64,
}

impl RespCodec {
    /// `seed` makes each connection's key sequence its own.
    pub fn new(keys: Arc<Vec<Bytes>>, value: Bytes, get_percent: u8, seed: u64) -> RespCodec {
        RespCodec {
            keys,
            value,
            get_percent,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            buf: Vec::new(),
            start: 0,
            end: 0,
            answered: 0,
        }
    }
}

impl Codec for RespCodec {
    fn reset(&mut self) {
        (self.start, self.end, self.answered) = (0, 0, 0);
    }

    fn encode(&mut self, ids: Range<u64>, out: &mut Vec<u8>) -> Result<(), String> {
        for _ in ids {
            let key = &self.keys[self.rng.random_range(0..self.keys.len())];
            if self.rng.random_range(0..100u8) < self.get_percent {
                put_array_header(out, 2);
                put_bulk(out, b"GET");
                put_bulk(out, key);
            } else {
                put_array_header(out, 3);
                put_bulk(out, b"SET");
                put_bulk(out, key);
                put_bulk(out, &self.value);
            }
        }
        Ok(())
    }

    fn read_buffer(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.buf.len() < self.end + READ_BYTES {
            self.buf.resize(self.end + READ_BYTES, 0);
        }
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    fn next_answer(&mut self) -> Result<Option<Answer>, String> {
        let unread = &self.buf[self.start..self.end];
        let Some(len) = value_len(unread, &ANSWER_LIMITS).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let outcome = match unread.first() {
            Some(b'-') => Outcome::Refused {
                error: match parse_value(unread, &ANSWER_LIMITS) {
                    Ok(Some((Value::Error(text), _))) => text,
                    _ => "an unreadable error answer".into(),
                },
            },
            _ => Outcome::Done,
        };
        self.start += len;
        let id = self.answered;
        self.answered += 1;
        Ok(Some(Answer { id, outcome }))
    }
}

/// The leader of each of `groups` groups, asking every node's INFO until all are known or
/// `patience` runs out.
pub fn leaders(
    nodes: &[(NodeId, SocketAddr)],
    groups: u32,
    patience: Duration,
    tls: Option<&ClientTls>,
) -> Result<Vec<(GroupId, NodeId)>, String> {
    let started = Instant::now();
    loop {
        // (term, leader) per group, from nodes that say they lead it.
        let mut known: Vec<Option<(u64, NodeId)>> = vec![None; groups as usize];
        for &(node, addr) in nodes {
            let Ok(text) = info(node, addr, tls) else {
                continue;
            };
            for (group, term) in led_groups(&text) {
                if let Some(slot) = known.get_mut(group as usize) {
                    if slot.is_none_or(|(known_term, _)| known_term < term) {
                        *slot = Some((term, node));
                    }
                }
            }
        }
        if known.iter().all(Option::is_some) {
            return Ok(known
                .into_iter()
                .enumerate()
                .filter_map(|(group, leader)| Some((GroupId(group as u64), leader?.1)))
                .collect());
        }
        if started.elapsed() >= patience {
            let missing = known.iter().position(Option::is_none).unwrap_or(0);
            return Err(format!(
                "no leader for group {missing} within {patience:?} (asked INFO on RESP)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// INFO's text from `node` at `addr` (within about two seconds).
fn info(node: NodeId, addr: SocketAddr, tls: Option<&ClientTls>) -> std::io::Result<String> {
    let timeout = Duration::from_secs(1);
    let deadline = Instant::now() + 2 * timeout;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut stream: Box<dyn BlockingIo> = match tls {
        Some(tls) => Box::new(tls.connect_blocking(stream, node)?),
        None => Box::new(stream),
    };
    stream.write_all(b"*1\r\n$4\r\nINFO\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match parse_value(&buf, &ANSWER_LIMITS).map_err(std::io::Error::other)? {
            Some((Value::Bulk(text), _)) => return Ok(String::from_utf8_lossy(&text).into()),
            Some(_) => return Err(std::io::Error::other("INFO answered something else")),
            None => {}
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    Err(std::io::ErrorKind::TimedOut.into())
}

/// Groups the INFO text says its node leads, with the term.
fn led_groups(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().split_once(':')?;
            let group = name.strip_prefix("group")?.parse().ok()?;
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
            };
            (field("role")? == "leader").then_some((group, field("term")?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_match_by_order_and_errors_fail() {
        let keys = group_keys(50, 2).unwrap();
        assert_eq!(keys[0].len() + keys[1].len(), 50);
        let mut codec = RespCodec::new(keys[1].clone(), Bytes::from_static(b"v"), 50, 7);
        let mut out = Vec::new();
        codec.encode(0..4, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("SET").count() + text.matches("GET").count(), 4);
        let wire = b"+OK\r\n$-1\r\n-MOVED 3 127.0.0.1:1\r\n$3\r\nab";
        codec.read_buffer()[..wire.len()].copy_from_slice(wire);
        codec.filled(wire.len());
        let mut answers = Vec::new();
        while let Some(answer) = codec.next_answer().unwrap() {
            answers.push(answer);
        }
        assert_eq!(answers.len(), 3, "the fourth is incomplete");
        assert_eq!(
            answers[1],
            Answer {
                id: 1,
                outcome: Outcome::Done
            }
        );
        assert_eq!(
            answers[2].outcome,
            Outcome::Refused {
                error: "MOVED 3 127.0.0.1:1".into(),
            }
        );
        codec.read_buffer()[..3].copy_from_slice(b"c\r\n");
        codec.filled(3);
        assert_eq!(codec.next_answer().unwrap().map(|a| a.id), Some(3));
        codec.read_buffer()[..4].copy_from_slice(b"?x\r\n");
        codec.filled(4);
        assert!(codec.next_answer().is_err(), "garbage is an error");
    }

    #[test]
    fn info_names_the_groups_a_node_leads() {
        let text = "# Groups\r\ngroup0:role=leader,term=3,leader=1,commit=1\r\n\
                    group1:role=follower,term=2,leader=2\r\ngroupx:role=leader,term=1\r\n";
        assert_eq!(led_groups(text), [(0, 3)]);
        assert!(group_keys(1, 4).is_err());
    }
}
