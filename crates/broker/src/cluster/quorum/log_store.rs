//! The metadata quorum's durable Raft state in `<data dir>/__cluster_metadata-0/`:
//! `raft.log`, an append-only file of framed entries, and `hardstate`, the
//! term, vote and commit index, replaced atomically.
//!
//! Raft needs both on disk before a node answers a vote or acknowledges an
//! append, so every write here is followed by fsync: unlike the partition logs,
//! this log is small and its writes are rare (metadata changes, not records).
//!
//! A frame is `[len u32][crc32c u32][entry bytes]`. A follower may have to
//! replace the tail of its log (a new leader's entries win); the replacement
//! entries are appended, and replay lets an entry at index i discard every
//! entry at or after i read before it. A torn last frame (a crash mid-write)
//! is cut off on open.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState};

pub const DIR_NAME: &str = "__cluster_metadata-0";
const LOG_FILE: &str = "raft.log";
const HARDSTATE_FILE: &str = "hardstate";
/// A metadata entry is a small JSON record; anything larger is corruption.
const ENTRY_BYTES_MAX: usize = 16 << 20;

pub struct LogStore {
    dir: PathBuf,
    log: File,
}

/// What was on disk at start-up.
pub struct Recovered {
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
}

impl LogStore {
    pub fn open(data_dir: &Path) -> io::Result<(Self, Recovered)> {
        let dir = data_dir.join(DIR_NAME);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(LOG_FILE);
        let (entries, valid_bytes) = read_entries(&path)?;
        let log = OpenOptions::new().create(true).append(true).open(&path)?;
        if log.metadata()?.len() > valid_bytes {
            tracing::warn!(path = %path.display(), valid_bytes, "cutting a torn tail off the metadata log");
            log.set_len(valid_bytes)?;
            log.sync_all()?;
        }
        let hard_state = match std::fs::read(dir.join(HARDSTATE_FILE)) {
            Ok(bytes) => HardState::parse_from_bytes(&bytes).map_err(invalid)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HardState::default(),
            Err(e) => return Err(e),
        };
        Ok((Self { dir, log }, Recovered { entries, hard_state }))
    }

    /// Appends `entries` and makes them durable.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let mut buf = Vec::new();
        for entry in entries {
            let bytes = entry.write_to_bytes().map_err(invalid)?;
            buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
            buf.extend_from_slice(&bytes);
        }
        let log = &mut self.log;
        let end = log.metadata()?.len();
        crate::storage::space::with_reserve(|| {
            let written = log.write_all(&buf).and_then(|()| log.sync_data());
            if written.is_err() {
                // A torn frame would end replay early and hide every entry
                // appended after it: cut it before anything else is written.
                log.set_len(end)?;
            }
            written
        })
    }

    /// Replaces the hard state: temporary file, fsync, rename, fsync the directory.
    pub fn set_hard_state(&self, hard_state: &HardState) -> io::Result<()> {
        let bytes = hard_state.write_to_bytes().map_err(invalid)?;
        crate::storage::space::replace_file(&self.dir.join(HARDSTATE_FILE), &bytes, true)
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Replays the log: returns the surviving entries in index order and the
/// length of the valid prefix of the file.
fn read_entries(path: &Path) -> io::Result<(Vec<Entry>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut entries: Vec<Entry> = Vec::new();
    let mut valid_bytes = 0u64;
    let mut header = [0u8; 8];
    // Bounded by the file's length: every round consumes a frame or stops.
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        if len > ENTRY_BYTES_MAX {
            break;
        }
        let mut bytes = vec![0u8; len];
        if reader.read_exact(&mut bytes).is_err() || crc32c::crc32c(&bytes) != crc {
            break;
        }
        let Ok(entry) = Entry::parse_from_bytes(&bytes) else {
            break;
        };
        // A rewritten tail: the later entry at this index replaces what followed.
        if let Some(first) = entries.first().map(|e| e.index) {
            let keep = entry.index.saturating_sub(first) as usize;
            entries.truncate(keep.min(entries.len()));
        }
        assert!(
            entries.last().is_none_or(|last| last.index + 1 == entry.index),
            "metadata log entries are contiguous"
        );
        entries.push(entry);
        valid_bytes += 8 + len as u64;
    }
    Ok((entries, valid_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn entries_and_hard_state_survive_reopen_and_a_rewritten_tail_wins() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, recovered) = LogStore::open(dir.path()).unwrap();
            assert!(recovered.entries.is_empty());
            store
                .append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
                .unwrap();
            // A new leader in term 2 replaces entries from index 2 on.
            store.append(&[entry(2, 2, b"B")]).unwrap();
            let hs = HardState {
                term: 2,
                vote: 3,
                commit: 2,
                ..Default::default()
            };
            store.set_hard_state(&hs).unwrap();
        }
        let (_, recovered) = LogStore::open(dir.path()).unwrap();
        let got: Vec<(u64, u64)> = recovered.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!(&recovered.entries[1].data[..], b"B");
        assert_eq!(
            (
                recovered.hard_state.term,
                recovered.hard_state.vote,
                recovered.hard_state.commit
            ),
            (2, 3, 2)
        );
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, _) = LogStore::open(dir.path()).unwrap();
            store.append(&[entry(1, 1, b"a"), entry(2, 1, b"b")]).unwrap();
        }
        let path = dir.path().join(DIR_NAME).join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (mut store, recovered) = LogStore::open(dir.path()).unwrap();
        assert_eq!(recovered.entries.len(), 1);
        store.append(&[entry(2, 1, b"b2")]).unwrap();
        let (_, recovered) = LogStore::open(dir.path()).unwrap();
        assert_eq!(recovered.entries.len(), 2);
        assert_eq!(&recovered.entries[1].data[..], b"b2");
    }
}
