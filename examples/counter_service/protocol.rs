//! The service's line protocol: one request per line, one reply line per request.
//!
//! Requests (case-insensitive command names):
//!
//! | request              | effect                                                     |
//! |----------------------|------------------------------------------------------------|
//! | `INCR n`             | adds `n` (a `u64`) to the count; `OK <new count>`          |
//! | `GET`                | the count, linearizable; `OK <count>`                      |
//! | `STATUS`             | this node's view of the group; `OK key=value ...`          |
//! | `SNAPSHOT`           | snapshots the count, compacts the log; `OK <index>`        |
//! | `ADD-LEARNER id addr`| adds node `id` (peer address `addr`) as a learner          |
//! | `PROMOTE id`         | makes the learner `id` a voter                             |
//! | `REMOVE id`          | removes member `id`                                        |
//!
//! Replies: `OK ...` (done), `REDIRECT <id>` (node `id` leads the group: ask it),
//! `ERR <reason>` (certainly not done) or `UNKNOWN <reason>` (a change whose outcome is
//! unknown: it may or may not have been applied, and may still be; read the count to find out,
//! rather than sending it again blindly).

use std::fmt;
use std::net::SocketAddr;

use ringraft::types::NodeId;

/// Longest request line accepted, newline included.
pub const LINE_BYTES_MAX: u64 = 256;

/// One parsed request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Incr(u64),
    Get,
    Status,
    Snapshot,
    AddLearner { id: NodeId, addr: SocketAddr },
    Promote(NodeId),
    Remove(NodeId),
}

/// One reply line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    Redirect(NodeId),
    Err(String),
    Unknown(String),
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok(text) => write!(f, "OK {text}"),
            Reply::Redirect(leader) => write!(f, "REDIRECT {}", leader.0),
            Reply::Err(reason) => write!(f, "ERR {reason}"),
            Reply::Unknown(reason) => write!(f, "UNKNOWN {reason}"),
        }
    }
}

/// Parses one request line (without its newline).
pub fn parse(line: &str) -> Result<Request, String> {
    let mut words = line.split_whitespace();
    let command = words.next().ok_or("empty request")?.to_ascii_uppercase();
    let arguments: Vec<&str> = words.collect();
    let request = match (command.as_str(), arguments.as_slice()) {
        ("INCR", [amount]) => Request::Incr(number(amount)?),
        ("GET", []) => Request::Get,
        ("STATUS", []) => Request::Status,
        ("SNAPSHOT", []) => Request::Snapshot,
        ("ADD-LEARNER", [id, addr]) => Request::AddLearner {
            id: NodeId(number(id)?),
            addr: addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IP address and port"))?,
        },
        ("PROMOTE", [id]) => Request::Promote(NodeId(number(id)?)),
        ("REMOVE", [id]) => Request::Remove(NodeId(number(id)?)),
        ("INCR" | "GET" | "STATUS" | "SNAPSHOT" | "ADD-LEARNER" | "PROMOTE" | "REMOVE", _) => {
            return Err(format!("wrong number of arguments for {command}"))
        }
        _ => return Err(format!("unknown command {command:?}")),
    };
    Ok(request)
}

fn number(word: &str) -> Result<u64, String> {
    word.parse()
        .map_err(|_| format!("{word:?} is not a non-negative integer"))
}
