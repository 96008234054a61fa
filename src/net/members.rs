//! Members' addresses as they travel in every configuration entry's context: for each member
//! its id, its base peer address and, if known, its base client address.
//!
//! A node learns where a member it has never been told about lives from the configuration that
//! brings the member in; the bootstrap configuration's addresses come from
//! [`NodeConfig::peers`](crate::api::NodeConfig::peers).
//!
//! # Layout (little-endian)
//!
//! ```text
//! list:     format = 1: u8 | reserved: u8 (0) | count: u16 | count × member
//! member:   id: u64 | flags: u8 (bit0: client address present) | peer address
//!           | [client address]
//! address:  family: u8 (4 or 6) | reserved: u8 (0) | port: u16 | 4 or 16 address bytes
//!         | family: u8 (0: host name) | length: u8 | port: u16 | length bytes of the name
//! ```
//!
//! Peer addresses may be host names ([`PeerAddr::Host`], resolved at each connection); client
//! addresses are always IP addresses, since clients are told them in "not leader" answers.
//!
//! Invariants: members are sorted by id without duplicates, at most [`MEMBERS_MAX`]; reserved
//! bytes are zero, flags known, nothing trails the last member. The encoding is canonical and
//! decoding never panics. IPv6 flow labels and scope ids are not carried.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::membership::MEMBERS_MAX;
use crate::types::{NodeId, PeerAddr, PeerConfig};

const FORMAT: u8 = 1;
const FLAG_CLIENT: u8 = 1;

/// Why bytes are not a member list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("member list is malformed: {0}")]
    Malformed(&'static str),
}

/// Appends `addr` in the layout above.
pub fn put_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[4, 0]);
            out.extend_from_slice(&addr.port().to_le_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[6, 0]);
            out.extend_from_slice(&addr.port().to_le_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// Family code of a host name.
const FAMILY_HOST: u8 = 0;

/// Appends `addr` in the layout above.
pub fn put_peer_addr(out: &mut Vec<u8>, addr: &PeerAddr) {
    match addr {
        PeerAddr::Ip(addr) => put_socket_addr(out, *addr),
        PeerAddr::Host { name, port } => {
            let length = u8::try_from(name.len()).expect("host names are at most 253 bytes");
            out.extend_from_slice(&[FAMILY_HOST, length]);
            out.extend_from_slice(&port.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
    }
}

/// Reads one peer address (an IP address or a host name) from the front of `bytes`; returns
/// it and the bytes after it.
pub fn read_peer_addr(bytes: &[u8]) -> Result<(PeerAddr, &[u8]), MembersError> {
    let malformed = MembersError::Malformed;
    if bytes.first() != Some(&FAMILY_HOST) {
        let (addr, rest) = read_socket_addr(bytes)?;
        return Ok((PeerAddr::Ip(addr), rest));
    }
    let (head, rest) = split(bytes, 4).ok_or(malformed("truncated address"))?;
    let port = u16::from_le_bytes([head[2], head[3]]);
    let (name, rest) = split(rest, head[1] as usize).ok_or(malformed("truncated host name"))?;
    let name = std::str::from_utf8(name)
        .ok()
        .filter(|name| {
            PeerAddr::is_host_name(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
        })
        .ok_or(malformed("invalid host name"))?;
    let name = name.to_string();
    Ok((PeerAddr::Host { name, port }, rest))
}

/// Reads one IP address from the front of `bytes`; returns it and the bytes after it.
pub fn read_socket_addr(bytes: &[u8]) -> Result<(SocketAddr, &[u8]), MembersError> {
    let malformed = MembersError::Malformed;
    let (head, rest) = split(bytes, 4).ok_or(malformed("truncated address"))?;
    if head[1] != 0 {
        return Err(malformed("reserved address byte is not zero"));
    }
    let port = u16::from_le_bytes([head[2], head[3]]);
    match head[0] {
        4 => {
            let (ip, rest) = split(rest, 4).ok_or(malformed("truncated address"))?;
            let ip: [u8; 4] = ip.try_into().expect("four bytes");
            Ok((SocketAddr::new(Ipv4Addr::from(ip).into(), port), rest))
        }
        6 => {
            let (ip, rest) = split(rest, 16).ok_or(malformed("truncated address"))?;
            let ip: [u8; 16] = ip.try_into().expect("sixteen bytes");
            Ok((SocketAddr::new(Ipv6Addr::from(ip).into(), port), rest))
        }
        _ => Err(malformed("unknown address family")),
    }
}

fn split(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

/// Encodes `members` (sorted by id here; the caller keeps ids unique and at most
/// [`MEMBERS_MAX`] of them).
pub fn encode_members(members: &[PeerConfig]) -> Vec<u8> {
    let mut sorted: Vec<&PeerConfig> = members.iter().collect();
    sorted.sort_by_key(|member| member.id);
    let mut out = vec![FORMAT, 0];
    out.extend_from_slice(&(sorted.len() as u16).to_le_bytes());
    for member in sorted {
        out.extend_from_slice(&member.id.0.to_le_bytes());
        out.push(if member.client_addr.is_some() {
            FLAG_CLIENT
        } else {
            0
        });
        put_peer_addr(&mut out, &member.addr);
        if let Some(client) = member.client_addr {
            put_socket_addr(&mut out, client);
        }
    }
    out
}

/// Decodes a member list (see the module docs). Empty bytes are an empty list: a bootstrap
/// configuration carries no context.
pub fn decode_members(bytes: &[u8]) -> Result<Vec<PeerConfig>, MembersError> {
    let malformed = MembersError::Malformed;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (head, mut rest) = split(bytes, 4).ok_or(malformed("truncated header"))?;
    if head[0] != FORMAT {
        return Err(malformed("unknown format"));
    }
    if head[1] != 0 {
        return Err(malformed("reserved header byte is not zero"));
    }
    let count = u16::from_le_bytes([head[2], head[3]]) as usize;
    if count > MEMBERS_MAX {
        return Err(malformed("too many members"));
    }
    let mut members: Vec<PeerConfig> = Vec::with_capacity(count);
    for _ in 0..count {
        let (fixed, after) = split(rest, 9).ok_or(malformed("truncated member"))?;
        let id = NodeId(u64::from_le_bytes(fixed[..8].try_into().expect("eight")));
        let flags = fixed[8];
        if flags & !FLAG_CLIENT != 0 {
            return Err(malformed("unknown member flags"));
        }
        if members.last().is_some_and(|last| last.id >= id) {
            return Err(malformed("members are not sorted and unique"));
        }
        let (addr, after) = read_peer_addr(after)?;
        let (client_addr, after) = if flags & FLAG_CLIENT != 0 {
            let (client, after) = read_socket_addr(after)?;
            (Some(client), after)
        } else {
            (None, after)
        };
        rest = after;
        members.push(PeerConfig {
            id,
            addr,
            client_addr,
        });
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the last member"));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, port: u16, client: Option<u16>) -> PeerConfig {
        PeerConfig {
            id: NodeId(id),
            addr: SocketAddr::from(([127, 0, 0, id as u8], port)).into(),
            client_addr: client.map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }

    #[test]
    fn lists_round_trip_sorted_and_reject_damage() {
        let mut list = vec![
            member(3, 7040, None),
            member(1, 7000, Some(7010)),
            PeerConfig {
                id: NodeId(2),
                addr: "[::1]:7020".parse().unwrap(),
                client_addr: Some("[fe80::1]:7030".parse().unwrap()),
            },
            PeerConfig {
                id: NodeId(4),
                addr: "db-4.example.com:7060".parse().unwrap(),
                client_addr: None,
            },
        ];
        let bytes = encode_members(&list);
        list.sort_by_key(|member| member.id);
        assert_eq!(decode_members(&bytes).unwrap(), list);
        assert_eq!(decode_members(&[]).unwrap(), Vec::new());
        for cut in 1..bytes.len() {
            assert!(decode_members(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_members(&trailing).is_err());
        let mut duplicate = encode_members(&[member(1, 1, None)]);
        duplicate[2] = 2;
        duplicate.extend_from_slice(&encode_members(&[member(1, 1, None)])[4..]);
        assert!(decode_members(&duplicate).is_err());
        let mut flags = bytes.clone();
        flags[12] = 0x80;
        assert!(decode_members(&flags).is_err());
    }

    #[test]
    fn host_names_must_be_valid_lowercase_names() {
        let named = PeerConfig {
            id: NodeId(1),
            addr: "Node-1.Example:7000".parse().unwrap(),
            client_addr: None,
        };
        assert_eq!(
            named.addr,
            PeerAddr::Host {
                name: "node-1.example".into(),
                port: 7000
            }
        );
        let bytes = encode_members(&[named]);
        assert!(decode_members(&bytes).is_ok());
        let name_at = bytes.len() - "node-1.example".len();
        for bad in [b' ', b'N', b'_', 0xff] {
            let mut damaged = bytes.clone();
            damaged[name_at] = bad;
            assert!(decode_members(&damaged).is_err(), "byte {bad:#x}");
        }
        for text in [
            "no-port",
            "-lead.example:1",
            "a..b:1",
            "host:99999",
            "ok.example:",
        ] {
            assert!(text.parse::<PeerAddr>().is_err(), "{text}");
        }
    }
}
