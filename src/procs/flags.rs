//! Flag values shared by the command lines of a node and of the harnesses that spawn nodes.

use std::str::FromStr;

use clap::ValueEnum;
use serde::Deserialize;

use crate::types::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// fdatasync every flush (durable).
    Always,
    /// Never sync (measurements only: not durable).
    Never,
}

/// How a node writes its log lines to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `fields.message` and the event's
    /// other fields.
    Json,
}

impl LogFormat {
    /// The flag value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Parses `ID=ADDR,ID=ADDR,...` (each ADDR as an `A`: a socket address, or a [`PeerAddr`](crate::types::PeerAddr) where host names are allowed).
pub fn parse_members<A>(list: &str, flag: &str) -> Result<Vec<(NodeId, A)>, String>
where
    A: FromStr,
    A::Err: std::fmt::Display,
{
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (id, addr) = item
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{flag}: '{item}' is not ID=ADDR"))?;
            let id = id
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{id}' is not a node id"))?;
            let addr = addr
                .parse::<A>()
                .map_err(|e| format!("{flag}: '{addr}' is not an address: {e}"))?;
            Ok((NodeId(id), addr))
        })
        .collect()
}
