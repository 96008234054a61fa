//! What a group's core starts from after a restart: the newest snapshot and the log that
//! continues it.
//!
//! A snapshot becomes durable before the log is compacted behind it, so after a crash the log
//! may still hold entries the snapshot covers (they are skipped) or, when the crash fell
//! between storing an installed snapshot and replacing the log, entries that do not continue
//! the snapshot at all. Then the snapshot wins: the log is emptied up to the snapshot's index
//! (staged here; durable with the next flush).

use crate::core::{Recovered, SnapshotMeta};
use crate::log::{self, LogStore};
use crate::types::{GroupId, Term};

/// The durable state of `group`: `snapshot` (the newest stored one, if any) and `log`.
pub fn recover<L: LogStore>(
    log: &mut L,
    group: GroupId,
    snapshot: Option<SnapshotMeta>,
) -> Result<Recovered, log::Error> {
    let hard_state = log.hard_state(group);
    if let Some(snapshot) = &snapshot {
        if log.term_at(group, snapshot.index) != Some(snapshot.term) {
            let first = log.first_index(group);
            if log.last_index(group) >= first {
                log.truncate(group, first)?;
            }
            log.compact(group, snapshot.index, snapshot.term)?;
            return Ok(Recovered {
                hard_state,
                log_base: (snapshot.index, snapshot.term),
                snapshot: Some(snapshot.clone()),
                batches: Vec::new(),
            });
        }
    }
    let first = log.first_index(group);
    let last = log.last_index(group);
    let base = first.prev();
    let base_term = log.term_at(group, base).unwrap_or(Term::ZERO);
    let batches = if last >= first {
        log.read(group, first, last)?
    } else {
        Vec::new()
    };
    Ok(Recovered {
        hard_state,
        snapshot,
        log_base: (base, base_term),
        batches,
    })
}
