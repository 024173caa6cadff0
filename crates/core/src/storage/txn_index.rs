//! A segment's aborted-transaction index, Kafka's `.txnindex`: one 34-byte
//! entry (version 0, producer id, first offset, last offset, last stable
//! offset) per transaction whose ABORT marker lies in the segment, in marker
//! order. read_committed fetches hand the entries that overlap what they
//! return to the client, which drops those producers' records.
//!
//! Written behind like the other indexes (on the maintenance tick, at a roll
//! and at shutdown), and only once the segment has an abort: most segments
//! have no file and hold no descriptor for one. Recovery rebuilds what the
//! page cache lost from the markers it reads back.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::index::IndexEntry;

const VERSION: i16 = 0;
/// Entries read from one file at most: a file claiming more is damaged.
const ENTRIES_MAX: usize = 1 << 20;

/// A transaction aborted on this partition: its producer's records in
/// `first_offset..=last_offset` are not to be read (`last_offset` is the
/// marker). `last_stable_offset` is the partition's when the marker was
/// written, as Kafka records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl IndexEntry for AbortedTxn {
    const BYTES: usize = 34;
    fn encode(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let at = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Self {
            producer_id: at(2),
            first_offset: at(10),
            last_offset: at(18),
            last_stable_offset: at(26),
        }
    }
}

pub struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Entries `[..persisted]` are in the file.
    persisted: usize,
    /// The file must be cut to `persisted` entries at the next flush.
    needs_truncate: bool,
}

impl TxnIndex {
    /// Loads `path` if it exists. Entries out of marker order, of another
    /// version, or past `next_offset` (the segment's end after recovery),
    /// and a torn last entry, end what is kept; the file is cut to match.
    pub fn open(path: &Path, next_offset: i64) -> io::Result<Self> {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut entries: Vec<AbortedTxn> = Vec::new();
        for chunk in raw.chunks_exact(AbortedTxn::BYTES).take(ENTRIES_MAX) {
            let entry = AbortedTxn::decode(chunk);
            let in_order = entries.last().is_none_or(|e| e.last_offset < entry.last_offset);
            let version = i16::from_be_bytes([chunk[0], chunk[1]]);
            if version != VERSION
                || !in_order
                || entry.last_offset >= next_offset
                || entry.first_offset > entry.last_offset
            {
                break;
            }
            entries.push(entry);
        }
        let persisted = entries.len();
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            persisted,
            needs_truncate: raw.len() != persisted * AbortedTxn::BYTES,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Adds the transaction an ABORT marker at `entry.last_offset` ended.
    pub fn push(&mut self, entry: AbortedTxn) {
        assert!(
            self.entries.last().is_none_or(|e| e.last_offset < entry.last_offset),
            "aborted transactions are indexed in marker order"
        );
        assert!(
            entry.first_offset <= entry.last_offset,
            "a transaction ends after it begins"
        );
        self.entries.push(entry);
    }

    /// Recovery: indexes an abort read back from its marker, unless the
    /// file had it. In marker order wherever it falls (the file is what the
    /// disk says, not what this run wrote).
    pub fn restore(&mut self, entry: AbortedTxn) {
        let Err(at) = self.entries.binary_search_by_key(&entry.last_offset, |e| e.last_offset) else {
            return;
        };
        self.entries.insert(at, entry);
        if at < self.persisted {
            // Entries after it move: the file is rewritten from here.
            self.persisted = at;
            self.needs_truncate = true;
        }
    }

    /// Whether the index has the marker at `last_offset`.
    pub fn contains(&self, last_offset: i64) -> bool {
        self.entries
            .binary_search_by_key(&last_offset, |e| e.last_offset)
            .is_ok()
    }

    /// Forgets the transactions whose marker is at or past `offset` (a truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        let n = self.entries.partition_point(|e| e.last_offset < offset);
        if n < self.entries.len() {
            self.entries.truncate(n);
            if n < self.persisted {
                self.persisted = n;
                self.needs_truncate = true;
            }
        }
    }

    /// Writes the entries not yet in the file, creating it on the first.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.needs_truncate && self.persisted == self.entries.len() {
            return Ok(());
        }
        let file = match OpenOptions::new()
            .write(true)
            .create(self.entries.len() > self.persisted)
            .open(&self.path)
        {
            Ok(file) => file,
            // Nothing to cut and nothing to write.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.needs_truncate = false;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.needs_truncate {
            file.set_len((self.persisted * AbortedTxn::BYTES) as u64)?;
            self.needs_truncate = false;
        }
        let mut raw = vec![0u8; (self.entries.len() - self.persisted) * AbortedTxn::BYTES];
        for (chunk, e) in raw
            .chunks_exact_mut(AbortedTxn::BYTES)
            .zip(&self.entries[self.persisted..])
        {
            e.encode(chunk);
        }
        file.write_all_at(&raw, (self.persisted * AbortedTxn::BYTES) as u64)?;
        self.persisted = self.entries.len();
        Ok(())
    }

    /// Flushes, then fsyncs the file if there is one.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.entries.is_empty() {
            return Ok(());
        }
        std::fs::File::open(&self.path)?.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: first,
        }
    }

    #[test]
    fn no_file_until_an_abort_then_entries_survive_reopen_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::open(&path, 100).unwrap();
        index.flush().unwrap();
        assert!(!path.exists(), "an index with no abort has no file");
        index.push(entry(7, 0, 10));
        index.push(entry(8, 5, 20));
        index.push(entry(7, 21, 30));
        index.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 34);
        assert_eq!(TxnIndex::open(&path, 100).unwrap().entries(), index.entries());
        // Recovery cut the segment at 25: the marker at 30 is gone.
        assert_eq!(TxnIndex::open(&path, 25).unwrap().entries().len(), 2);
        index.truncate_from(20);
        assert!(index.contains(10) && !index.contains(20));
        index.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 34);
    }

    #[test]
    fn a_torn_or_disordered_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.txnindex");
        let mut raw = vec![0u8; 34 * 3 + 7];
        entry(1, 0, 10).encode(&mut raw[0..34]);
        entry(2, 11, 20).encode(&mut raw[34..68]);
        entry(3, 0, 15).encode(&mut raw[68..102]); // out of marker order
        std::fs::write(&path, &raw).unwrap();
        let mut index = TxnIndex::open(&path, 1000).unwrap();
        assert_eq!(index.entries().len(), 2);
        index.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 68);
    }
}
