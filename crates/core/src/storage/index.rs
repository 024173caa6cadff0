//! Sparse indexes of a segment, in Kafka's on-disk formats:
//! `.index` maps a relative offset to a file position (8 bytes an entry), and
//! `.timeindex` maps a timestamp to a relative offset (12 bytes an entry).
//!
//! The in-memory entries are authoritative while the broker runs; the files
//! are written behind (on roll, on the maintenance tick and at shutdown).
//! Recovery never trusts them blindly: see `segment::Segment::open`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Kafka's `segment.index.bytes` default: a segment rolls when its index is full.
pub const INDEX_BYTES_MAX: usize = 10 * 1024 * 1024;

pub trait IndexEntry: Copy + std::fmt::Debug {
    const BYTES: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(b: &[u8]) -> Self;
}

/// Offset index entry: the batch that starts at `position` has base offset `base + rel_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const BYTES: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.rel_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            rel_offset: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
}

/// Time index entry: no record before the batch at `base + rel_offset` has a
/// timestamp above `timestamp_ms` (the running maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp_ms: i64,
    pub rel_offset: u32,
}

impl IndexEntry for TimeEntry {
    const BYTES: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.rel_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            timestamp_ms: i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            rel_offset: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        }
    }
}

pub struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    file: File,
    entries: Vec<E>,
    /// Entries `[..persisted]` are on disk; the file may also hold stale entries beyond.
    persisted: usize,
    /// The file must be cut to `persisted` entries at the next flush.
    needs_truncate: bool,
}

impl<E: IndexEntry> IndexFile<E> {
    /// Opens (or creates) the file and loads whole entries; a torn last entry is dropped.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        let whole = (len / E::BYTES).min(INDEX_BYTES_MAX / E::BYTES);
        let mut raw = vec![0u8; whole * E::BYTES];
        file.read_exact_at(&mut raw, 0)?;
        let entries: Vec<E> = raw.chunks_exact(E::BYTES).map(E::decode).collect();
        let persisted = entries.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries,
            persisted,
            needs_truncate: len != whole * E::BYTES,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub fn is_full(&self) -> bool {
        (self.entries.len() + 1) * E::BYTES > INDEX_BYTES_MAX
    }

    pub fn push(&mut self, entry: E) {
        assert!(
            !self.is_full(),
            "index append past INDEX_BYTES_MAX; the segment should have rolled"
        );
        self.entries.push(entry);
    }

    /// Keeps only the entries for which `keep` holds (a prefix, since entries are sorted).
    pub fn truncate_while(&mut self, keep: impl Fn(&E) -> bool) {
        let n = self.entries.partition_point(keep);
        if n < self.entries.len() {
            self.entries.truncate(n);
            if n < self.persisted {
                self.persisted = n;
            }
            self.needs_truncate = true;
        }
    }

    pub fn clear(&mut self) {
        self.truncate_while(|_| false);
    }

    /// Writes the entries not yet on disk. A plain pwrite: the index is small
    /// and rebuilt by recovery if the page cache is lost before writeback.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.needs_truncate {
            self.file.set_len((self.persisted * E::BYTES) as u64)?;
            self.needs_truncate = false;
        }
        if self.persisted == self.entries.len() {
            return Ok(());
        }
        let mut raw = vec![0u8; (self.entries.len() - self.persisted) * E::BYTES];
        for (chunk, e) in raw.chunks_exact_mut(E::BYTES).zip(&self.entries[self.persisted..]) {
            e.encode(chunk);
        }
        self.file.write_all_at(&raw, (self.persisted * E::BYTES) as u64)?;
        self.persisted = self.entries.len();
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }
}

impl IndexFile<OffsetEntry> {
    /// The last entry whose relative offset is at most `rel_offset`.
    pub fn floor(&self, rel_offset: u32) -> Option<OffsetEntry> {
        let n = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Strictly increasing offsets and positions, all inside the log file.
    pub fn is_consistent(&self, log_bytes: u64) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position)
            && self.entries.last().is_none_or(|e| (e.position as u64) < log_bytes)
    }
}

impl IndexFile<TimeEntry> {
    /// The last entry whose timestamp is below `timestamp_ms`: every record
    /// before its batch is older than the target.
    pub fn floor_below(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|e| e.timestamp_ms < timestamp_ms);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn is_consistent(&self) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms && w[0].rel_offset <= w[1].rel_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookup_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx: IndexFile<OffsetEntry> = IndexFile::open(&path).unwrap();
        for i in 0..100u32 {
            idx.push(OffsetEntry {
                rel_offset: i * 10,
                position: i * 4096,
            });
        }
        assert_eq!(idx.floor(0).unwrap().position, 0);
        assert_eq!(idx.floor(15).unwrap().rel_offset, 10);
        assert_eq!(idx.floor(990).unwrap().position, 99 * 4096);
        assert!(idx.is_consistent(100 * 4096));
        assert!(!idx.is_consistent(99 * 4096));
        idx.flush().unwrap();
        let reopened: IndexFile<OffsetEntry> = IndexFile::open(&path).unwrap();
        assert_eq!(reopened.entries(), idx.entries());
        idx.truncate_while(|e| e.position < 50 * 4096);
        idx.flush().unwrap();
        let reopened: IndexFile<OffsetEntry> = IndexFile::open(&path).unwrap();
        assert_eq!(reopened.entries().len(), 50);
    }

    #[test]
    fn torn_entry_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        std::fs::write(&path, [0u8; 12 * 3 + 5]).unwrap();
        let idx: IndexFile<TimeEntry> = IndexFile::open(&path).unwrap();
        assert_eq!(idx.entries().len(), 3);
        assert!(idx.floor_below(1).is_some());
    }
}
