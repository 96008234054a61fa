//! The text of INFO: this node's view of every group, from `Node::status()`.

use bytes::Bytes;

use crate::api::GroupStatus;
use crate::kv::resp::Value;
use crate::kv::route::ReadMode;
use crate::types::NodeId;

/// INFO's reply: a verbatim string (a bulk string in RESP2) of `name:value` lines in `# Section` blocks, one line per group
/// (`group<g>:role=…,term=…,leader=…,commit=…,applied=…,last_index=…`).
pub fn render(node: NodeId, read_mode: ReadMode, statuses: &[GroupStatus]) -> Value {
    let mut text = format!(
        "# Server\r\nringraft_version:{}\r\nnode_id:{}\r\nread_mode:{}\r\ngroups:{}\r\n\r\n# Groups\r\n",
        env!("CARGO_PKG_VERSION"),
        node.0,
        read_mode.name(),
        statuses.len()
    );
    for status in statuses {
        let group = &status.summary;
        text.push_str(&format!(
            "group{}:role={},term={},leader={},commit={},applied={},last_index={}\r\n",
            group.group.0,
            format!("{:?}", group.role).to_ascii_lowercase(),
            group.term.0,
            group
                .leader
                .map_or_else(|| "none".to_string(), |id| id.0.to_string()),
            group.commit.0,
            group.applied.0,
            group.last_index.0
        ));
    }
    Value::Verbatim {
        format: *b"txt",
        text: Bytes::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GroupSummary;
    use crate::core::Role;
    use crate::kv::resp::Protocol;
    use crate::types::{GroupId, LogIndex, Term};

    #[test]
    fn one_line_per_group() {
        let status = GroupStatus {
            summary: GroupSummary {
                group: GroupId(1),
                role: Role::Leader,
                term: Term(3),
                leader: Some(NodeId(2)),
                commit: LogIndex(10),
                applied: LogIndex(9),
                last_index: LogIndex(11),
            },
            followers: vec![],
            membership: Default::default(),
            snapshot_index: LogIndex::ZERO,
            log_base: LogIndex::ZERO,
        };
        let reply = render(NodeId(2), ReadMode::Lease, &[status]);
        assert!(reply.render(Protocol::Resp2).starts_with(b"$"));
        let text = reply.render(Protocol::Resp3);
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.starts_with('=') && text.contains("\r\ntxt:# Server\r\n"),
            "{text}"
        );
        assert!(text.contains("read_mode:lease\r\n"), "{text}");
        assert!(
            text.contains(
                "group1:role=leader,term=3,leader=2,commit=10,applied=9,last_index=11\r\n"
            ),
            "{text}"
        );
    }
}
