//! The marker that says a data directory belongs to a node.
//!
//! A node's votes live in its data directory. If the directory is wiped and the node comes
//! back, it has forgotten whom it voted for and could vote twice in one term, electing two
//! leaders. So a node starts only on a directory that carries its marker (cluster id and node
//! id), unless it is told to initialise one ([`NodeConfig::init`](crate::config::NodeConfig)).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{DataDirError, NodeError};
use crate::types::NodeId;

/// File name of the marker inside the data directory.
pub const MARKER_FILE: &str = "ringraft-node";

/// Checks (or, with `init` and no marker, creates) the marker of `node` in `cluster`.
pub fn claim(data_dir: &Path, cluster_id: u64, node: NodeId, init: bool) -> Result<(), NodeError> {
    claim_marker(data_dir, cluster_id, node, init).map_err(|source| NodeError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })
}

fn claim_marker(
    data_dir: &Path,
    cluster_id: u64,
    node: NodeId,
    init: bool,
) -> Result<(), DataDirError> {
    let io = |step: &'static str| move |source| DataDirError::Io { step, source };
    let marker = data_dir.join(MARKER_FILE);
    let expected = format!("cluster {cluster_id} node {}\n", node.0);
    match fs::read_to_string(&marker) {
        Ok(found) if found == expected => Ok(()),
        Ok(found) => Err(DataDirError::OtherOwner {
            found: found.trim().to_string(),
            expected: expected.trim().to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !init {
                return Err(DataDirError::NotInitialised);
            }
            fs::create_dir_all(data_dir).map_err(io("create"))?;
            let temporary = data_dir.join(format!("{MARKER_FILE}.tmp"));
            let mut file = fs::File::create(&temporary).map_err(io("create marker"))?;
            file.write_all(expected.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io("write marker"))?;
            fs::rename(&temporary, &marker).map_err(io("rename marker"))?;
            fs::File::open(data_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io("sync directory"))?;
            Ok(())
        }
        Err(e) => Err(io("read marker")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wiped_directory_is_refused_unless_initialised() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        let refused = claim_marker(&data, 7, NodeId(2), false).unwrap_err();
        assert!(matches!(refused, DataDirError::NotInitialised), "{refused}");
        claim(&data, 7, NodeId(2), true).unwrap();
        claim(&data, 7, NodeId(2), false).unwrap();
        let other = claim(&data, 7, NodeId(3), true).unwrap_err();
        assert!(other.to_string().contains("another node"), "{other}");
        let cluster = claim_marker(&data, 8, NodeId(2), false).unwrap_err();
        assert!(
            matches!(&cluster, DataDirError::OtherOwner { found, .. } if found == "cluster 7 node 2"),
            "{cluster}"
        );
    }
}
