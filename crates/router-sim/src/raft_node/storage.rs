//! Where a node keeps Raft's state under `--data-dir`, so a process restarted
//! in place rejoins with its log:
//!
//! - `raft-log-<id>`: the log, one JSON entry per line, appended (a torn last
//!   line from a kill mid-write is dropped on reading);
//! - `raft-vote-<id>`: the vote, the committed and the purged log ids (JSON,
//!   replaced atomically);
//! - `raft-snapshot-<id>`: the latest snapshot (JSON, replaced atomically).
//!
//! The state machine is rebuilt from the snapshot and the committed log.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Cursor, Write as _};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::machine::{self, Replicated};
use super::types::{Entry, LogId, Member, Outcome, StorageError, TypeConfig, Vote};

/// Why a data directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a Raft state file: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// The entries of a log file, up to the first line that does not parse.
pub fn parse_log(text: &str) -> BTreeMap<u64, Entry> {
    text.lines()
        .map_while(|line| serde_json::from_str::<Entry>(line).ok())
        .map(|entry| (entry.log_id.index, entry))
        .collect()
}

fn render_log<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    entries
        .into_iter()
        .filter_map(|entry| serde_json::to_string(entry).ok())
        .map(|line| line + "\n")
        .collect()
}

/// The small state kept beside the log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hard {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, OpenError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OpenError::Read { path: path.to_owned(), source }),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&temporary, path)
}

#[derive(Debug)]
struct Log {
    path: PathBuf,
    hard_path: PathBuf,
    hard: Hard,
    entries: BTreeMap<u64, Entry>,
}

impl Log {
    fn save_hard(&self) -> std::io::Result<()> {
        replace(&self.hard_path, &serde_json::to_vec(&self.hard).unwrap_or_default())
    }

    fn rewrite(&self) -> std::io::Result<()> {
        replace(&self.path, render_log(self.entries.values()).as_bytes())
    }
}

/// The log and vote of one node; clones share them (the log reader is a clone).
#[derive(Clone, Debug)]
pub struct LogStore {
    log: Arc<Mutex<Log>>,
}

impl LogStore {
    pub fn open(dir: &Path, id: u64) -> Result<Self, OpenError> {
        let path = dir.join(format!("raft-log-{id}"));
        let hard_path = dir.join(format!("raft-vote-{id}"));
        let entries = match read_optional(&path)? {
            Some(bytes) => parse_log(&String::from_utf8_lossy(&bytes)),
            None => BTreeMap::new(),
        };
        let hard = match read_optional(&hard_path)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| OpenError::Corrupt { path: hard_path.clone(), source })?,
            None => Hard::default(),
        };
        let log = Log { path, hard_path, hard, entries };
        // Rewritten so that a torn last line is gone before anything is appended.
        log.rewrite().map_err(|source| OpenError::Read { path: log.path.clone(), source })?;
        Ok(Self { log: Arc::new(Mutex::new(log)) })
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn write_logs(error: std::io::Error) -> StorageError {
    StorageIOError::write_logs(&error).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries.range(range).map(|(_, entry)| entry.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.lock();
        let last = log.entries.values().next_back().map(|entry| entry.log_id).or(log.hard.purged);
        Ok(LogState { last_purged_log_id: log.hard.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut log = self.lock();
        log.hard.vote = Some(*vote);
        log.save_hard().map_err(|error| StorageIOError::write_vote(&error).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().hard.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut log = self.lock();
        log.hard.committed = committed;
        log.save_hard().map_err(write_logs)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().hard.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut log = self.lock();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let written =
            std::fs::OpenOptions::new().append(true).create(true).open(&log.path).and_then(|mut file| {
                file.write_all(render_log(&entries).as_bytes())?;
                file.sync_data()
            });
        for entry in entries {
            log.entries.insert(entry.log_id.index, entry);
        }
        let result = written.map_err(|error| std::io::Error::new(error.kind(), error.to_string()));
        callback.log_io_completed(result);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock();
        log.entries.split_off(&log_id.index);
        log.rewrite().map_err(write_logs)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock();
        log.hard.purged = Some(log_id);
        log.save_hard().map_err(write_logs)?;
        log.entries = log.entries.split_off(&(log_id.index + 1));
        log.rewrite().map_err(write_logs)
    }
}

/// The state machine of one node, readable by its gRPC services through
/// [`StateMachine::state`], and its latest snapshot.
#[derive(Clone, Debug)]
pub struct StateMachine {
    state: Arc<RwLock<Replicated>>,
    snapshot_path: PathBuf,
    snapshot: Arc<Mutex<Option<Kept>>>,
}

/// A snapshot as kept: its meta and its bytes.
type Kept = (SnapshotMeta<u64, Member>, Vec<u8>);

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, Member>,
    data: Vec<u8>,
}

impl StateMachine {
    pub fn open(dir: &Path, id: u64) -> Result<Self, OpenError> {
        let snapshot_path = dir.join(format!("raft-snapshot-{id}"));
        let corrupt = |source| OpenError::Corrupt { path: snapshot_path.clone(), source };
        let (state, snapshot) = match read_optional(&snapshot_path)? {
            Some(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(corrupt)?;
                (machine::decode(&file.data).map_err(corrupt)?, Some((file.meta, file.data)))
            }
            None => (Replicated::default(), None),
        };
        Ok(Self {
            state: Arc::new(RwLock::new(state)),
            snapshot_path,
            snapshot: Arc::new(Mutex::new(snapshot)),
        })
    }

    /// The replicated state, for reads.
    pub fn state(&self) -> Arc<RwLock<Replicated>> {
        self.state.clone()
    }

    fn save_snapshot(&self, meta: &SnapshotMeta<u64, Member>, data: Vec<u8>) -> std::io::Result<()> {
        let file = SnapshotFile { meta: meta.clone(), data };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        replace(&self.snapshot_path, &bytes)?;
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Some((file.meta, file.data));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, membership) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            (machine::encode(&state), state.last_applied, state.membership.clone())
        };
        let snapshot_id =
            last_applied.map_or_else(|| "empty".to_owned(), |id| format!("{}-{}", id.leader_id, id.index));
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        self.save_snapshot(&meta, data.clone())
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, Member>), StorageError> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            outcomes.push(match entry.payload {
                EntryPayload::Blank => Outcome::None,
                EntryPayload::Normal(command) => machine::apply(&mut state.catalog, command),
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Outcome::None
                }
            });
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut installed = machine::decode(&data)
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), &error))?;
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        self.save_snapshot(meta, data)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Ok(snapshot.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let text = render_log(&[entry(1, 1), entry(1, 2), entry(2, 3)]);
        assert_eq!(parse_log(&text).len(), 3);
        let torn = &text[..text.len() - 5];
        let kept = parse_log(torn);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert!(parse_log("").is_empty());
        assert!(parse_log("not json\n").is_empty());
    }
}
