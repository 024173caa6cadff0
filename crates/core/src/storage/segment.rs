//! One segment of a partition log: `<base offset>.log` with its `.index` and
//! `.timeindex`, and a `.txnindex` once a transaction aborts in it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::{IndexFile, OffsetEntry, TimeEntry};
use super::txn_index::TxnIndex;
use crate::record::control::Marker;
use crate::record::{self, BATCH_HEADER_BYTES, BatchHeader};

/// The largest batch recovery will read back; anything claiming more is a torn or corrupt tail.
const RECOVERY_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

pub fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// What recovery did to a segment, for the start-up log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryStats {
    pub batches_scanned: u64,
    pub bytes_truncated: u64,
    pub index_rebuilt: bool,
}

pub struct Segment {
    pub base_offset: i64,
    /// Shared with other shards' fetch paths, which splice from it; never written there.
    pub file: Arc<File>,
    log_path: PathBuf,
    /// Bytes assigned to appends, written or in flight.
    pub size_bytes: u64,
    /// Bytes whose writes have completed: the fetch path reads only below this.
    pub readable_bytes: u64,
    /// One past the last offset assigned in this segment.
    pub next_offset: i64,
    /// Everything below this offset is fsynced (the flush policy's progress
    /// in this segment). A recovered segment counts as flushed: what survived
    /// the restart is what the broker has, as with Kafka's recovery point.
    pub flushed_offset: i64,
    pub max_timestamp_ms: i64,
    /// Wall-clock time the segment was created, for time-based rolling.
    pub created_ms: i64,
    index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    /// The transactions whose ABORT marker is in this segment.
    pub txn_index: TxnIndex,
    bytes_since_index: u64,
}

/// The position just past the batch at `pos`; a batch shorter than its own
/// header is corruption (and would stop a scan from advancing).
fn after_batch(pos: u64, header: &BatchHeader) -> io::Result<u64> {
    let total = header.total_bytes() as u64;
    if total < BATCH_HEADER_BYTES as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt batch length in segment",
        ));
    }
    Ok(pos + total)
}

fn read_header_at(file: &File, pos: u64, limit: u64) -> io::Result<Option<BatchHeader>> {
    if pos + BATCH_HEADER_BYTES as u64 > limit {
        return Ok(None);
    }
    let mut buf = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut buf, pos)?;
    Ok(BatchHeader::parse(&buf))
}

impl Segment {
    /// A new, empty segment at `base_offset`. Callers create one only past
    /// every segment the log holds, so a file already at that name is a
    /// leftover (a roll cancelled after its files were made, a crash): it is
    /// emptied and reused.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Self> {
        let log_path = dir.join(segment_file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        let mut index = IndexFile::open(&dir.join(segment_file_name(base_offset, "index")))?;
        let mut time_index = IndexFile::open(&dir.join(segment_file_name(base_offset, "timeindex")))?;
        // Leftovers of a deleted segment with the same base offset would be wrong.
        index.clear();
        time_index.clear();
        let mut txn_index = TxnIndex::open(&dir.join(segment_file_name(base_offset, "txnindex")), base_offset)?;
        txn_index.flush()?;
        let indexes = (index, time_index, txn_index);
        Ok(Self::empty(base_offset, file, log_path, now_ms, indexes))
    }

    /// A segment with nothing accounted yet; `open` then recovers its contents.
    fn empty(
        base_offset: i64,
        file: File,
        log_path: PathBuf,
        created_ms: i64,
        (index, time_index, txn_index): (IndexFile<OffsetEntry>, IndexFile<TimeEntry>, TxnIndex),
    ) -> Self {
        Self {
            base_offset,
            file: Arc::new(file),
            log_path,
            size_bytes: 0,
            readable_bytes: 0,
            next_offset: base_offset,
            flushed_offset: base_offset,
            max_timestamp_ms: -1,
            created_ms,
            index,
            time_index,
            txn_index,
            bytes_since_index: 0,
        }
    }

    /// Opens an existing segment and recovers it: indexes are checked and
    /// rebuilt if damaged, every batch after the last index entry is verified
    /// with its CRC32C, and a torn or corrupt tail is cut off.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> io::Result<(Self, RecoveryStats)> {
        let log_path = dir.join(segment_file_name(base_offset, "log"));
        let file = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let file_bytes = file.metadata()?.len();
        let created_ms = file
            .metadata()?
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now_ms, |d| d.as_millis() as i64);
        let index = IndexFile::open(&dir.join(segment_file_name(base_offset, "index")))?;
        let time_index = IndexFile::open(&dir.join(segment_file_name(base_offset, "timeindex")))?;
        // Loaded empty for now: entries are checked against the recovered end below.
        let txn_path = dir.join(segment_file_name(base_offset, "txnindex"));
        let txn_index = TxnIndex::open(&txn_path, base_offset)?;
        let indexes = (index, time_index, txn_index);
        let mut segment = Self::empty(base_offset, file, log_path, created_ms, indexes);
        let stats = segment.recover(file_bytes, index_interval_bytes)?;
        segment.flushed_offset = segment.next_offset;
        segment.txn_index = TxnIndex::open(&txn_path, segment.next_offset)?;
        segment.txn_index.flush()?;
        Ok((segment, stats))
    }

    fn index_matches_log(&self, file_bytes: u64) -> io::Result<bool> {
        if !self.index.is_consistent(file_bytes) || !self.time_index.is_consistent() {
            return Ok(false);
        }
        let Some(last) = self.index.last() else {
            return Ok(true);
        };
        let header = read_header_at(&self.file, last.position as u64, file_bytes)?;
        Ok(header.is_some_and(|h| h.base_offset == self.base_offset + last.rel_offset as i64))
    }

    fn recover(&mut self, file_bytes: u64, index_interval_bytes: u64) -> io::Result<RecoveryStats> {
        let mut stats = RecoveryStats::default();
        if !self.index_matches_log(file_bytes)? {
            self.index.clear();
            self.time_index.clear();
            stats.index_rebuilt = true;
        }
        if self.index.entries().is_empty() && file_bytes > 0 {
            stats.index_rebuilt = true;
        }
        // Resume from the last offset index entry; newer entries are regenerated by the scan.
        let (mut pos, mut expected) = match self.index.last() {
            Some(e) => (e.position as u64, self.base_offset + e.rel_offset as i64),
            None => (0, self.base_offset),
        };
        let resume_rel = (expected - self.base_offset) as u32;
        self.time_index.truncate_while(|e| e.rel_offset < resume_rel);
        self.max_timestamp_ms = self.time_index.last().map_or(-1, |e| e.timestamp_ms);
        self.index.truncate_while(|e| e.rel_offset < resume_rel);
        let mut buf = Vec::new();
        // The batch at the resume point gets its index entry back.
        self.bytes_since_index = index_interval_bytes;
        while let Some(header) = read_header_at(&self.file, pos, file_bytes)? {
            let total = header.total_bytes();
            let fits =
                (BATCH_HEADER_BYTES..=RECOVERY_BATCH_BYTES_MAX).contains(&total) && pos + total as u64 <= file_bytes;
            if !fits || header.base_offset != expected {
                break;
            }
            buf.resize(total, 0);
            self.file.read_exact_at(&mut buf, pos)?;
            if record::verify_stored_batch(&buf).is_none() {
                break;
            }
            self.size_bytes = pos;
            self.record_batch(&header, total as u64, index_interval_bytes);
            self.next_offset = header.next_offset();
            expected = header.next_offset();
            pos += total as u64;
            stats.batches_scanned += 1;
        }
        self.size_bytes = pos;
        self.readable_bytes = pos;
        if pos < file_bytes {
            stats.bytes_truncated = file_bytes - pos;
            self.file.set_len(pos)?;
        }
        self.index.flush()?;
        self.time_index.flush()?;
        Ok(stats)
    }

    /// Index bookkeeping for a batch placed at `self.size_bytes`.
    fn record_batch(&mut self, header: &BatchHeader, bytes: u64, index_interval_bytes: u64) {
        let rel_offset = (header.base_offset - self.base_offset) as u32;
        let first = self.index.entries().is_empty();
        if first || self.bytes_since_index >= index_interval_bytes {
            if !self.index.is_full() {
                self.index.push(OffsetEntry {
                    rel_offset,
                    position: self.size_bytes as u32,
                });
            }
            if header.max_timestamp > self.max_timestamp_ms && !self.time_index.is_full() {
                self.time_index.push(TimeEntry {
                    timestamp_ms: header.max_timestamp,
                    rel_offset,
                });
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += bytes;
        self.max_timestamp_ms = self.max_timestamp_ms.max(header.max_timestamp);
    }

    /// Reserves space for a batch whose offsets are already assigned and
    /// returns the file position to write it at.
    pub fn reserve(&mut self, header: &BatchHeader, bytes: u64, index_interval_bytes: u64) -> u64 {
        assert_eq!(
            header.base_offset, self.next_offset,
            "offsets in a segment are contiguous"
        );
        let position = self.size_bytes;
        self.record_batch(header, bytes, index_interval_bytes);
        self.size_bytes += bytes;
        self.next_offset = header.next_offset();
        position
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Whether the next batch of `bytes` should start a new segment.
    pub fn should_roll(&self, bytes: u64, segment_bytes: u64, segment_ms: i64, now_ms: i64) -> bool {
        !self.is_empty()
            && (self.size_bytes + bytes > segment_bytes
                || self.size_bytes + bytes > u32::MAX as u64
                || now_ms - self.created_ms >= segment_ms
                || self.index.is_full()
                || self.time_index.is_full()
                || bytes > 0 && self.next_offset - self.base_offset > u32::MAX as i64 / 2)
    }

    /// The position of the batch holding `offset`, with its header, reading
    /// only below `readable_bytes`. `None` if the offset is beyond this segment's data.
    pub fn locate(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let mut pos = self.index.floor(rel).map_or(0, |e| e.position as u64);
        while let Some(header) = read_header_at(&self.file, pos, self.readable_bytes)? {
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
            pos = after_batch(pos, &header)?;
        }
        Ok(None)
    }

    /// Cuts the segment back so it ends before the batch holding `offset`;
    /// returns the new end offset (`offset` when it is a batch boundary).
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<i64> {
        let Some((position, header)) = self.locate(offset)? else {
            return Ok(self.next_offset);
        };
        let rel_offset = (header.base_offset - self.base_offset) as u32;
        self.index.truncate_while(|e| e.rel_offset < rel_offset);
        self.time_index.truncate_while(|e| e.rel_offset < rel_offset);
        self.max_timestamp_ms = self.time_index.last().map_or(-1, |e| e.timestamp_ms);
        self.file.set_len(position)?;
        self.size_bytes = position;
        self.readable_bytes = position;
        self.next_offset = header.base_offset;
        self.bytes_since_index = u64::MAX / 2; // the next batch gets an index entry
        self.txn_index.truncate_from(header.base_offset);
        self.index.flush()?;
        self.time_index.flush()?;
        self.txn_index.flush()?;
        Ok(header.base_offset)
    }

    /// Cuts off what was reserved past the readable bytes (writes that failed
    /// or never ran): the file, the indexes and the next offset end where
    /// the readable batches do, at `end_offset`.
    pub fn discard_unreadable(&mut self, end_offset: i64) -> io::Result<()> {
        assert!(
            (self.base_offset..=self.next_offset).contains(&end_offset),
            "the readable end lies within the segment"
        );
        let rel_offset = (end_offset - self.base_offset) as u32;
        let readable = self.readable_bytes;
        self.index
            .truncate_while(|e| e.rel_offset < rel_offset && u64::from(e.position) < readable);
        self.time_index.truncate_while(|e| e.rel_offset < rel_offset);
        self.max_timestamp_ms = self.time_index.last().map_or(-1, |e| e.timestamp_ms);
        self.file.set_len(readable)?;
        self.size_bytes = readable;
        self.next_offset = end_offset;
        self.bytes_since_index = u64::MAX / 2; // the next batch gets an index entry
        self.txn_index.truncate_from(end_offset);
        self.flush_indexes()
    }

    /// Bytes from `position` (a batch start) covering whole batches that
    /// start below `end_offset`, stopping once `cap` bytes are covered.
    pub fn bytes_below(&self, end_offset: i64, position: u64, cap: u64) -> io::Result<u64> {
        let mut pos = position;
        // Bounded by the segment's readable bytes and by `cap`.
        while pos - position < cap {
            let Some(header) = read_header_at(&self.file, pos, self.readable_bytes)? else {
                break;
            };
            if header.base_offset >= end_offset {
                break;
            }
            pos = after_batch(pos, &header)?;
        }
        Ok(pos - position)
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`, with
    /// that timestamp, if any is in this segment.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp_ms < timestamp_ms {
            return Ok(None);
        }
        let start_rel = self.time_index.floor_below(timestamp_ms).map_or(0, |e| e.rel_offset);
        let mut pos = self.index.floor(start_rel).map_or(0, |e| e.position as u64);
        let mut buf = Vec::new();
        while let Some(header) = read_header_at(&self.file, pos, self.readable_bytes)? {
            let total = header.total_bytes();
            if total < BATCH_HEADER_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt batch length in segment",
                ));
            }
            if header.max_timestamp >= timestamp_ms {
                buf.resize(total.min(RECOVERY_BATCH_BYTES_MAX), 0);
                self.file.read_exact_at(&mut buf, pos)?;
                let exact = record::first_offset_at_or_after(&buf, timestamp_ms);
                return Ok(Some(exact.unwrap_or((header.base_offset, header.max_timestamp))));
            }
            pos += total as u64;
        }
        Ok(None)
    }

    /// Calls `f` with the header of every batch in the segment, in order, and
    /// for a transaction marker what it says (`control::read_marker`).
    /// Reads in large chunks: one pread per batch would be slow for small batches.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader, Option<(Marker, i32)>)) -> io::Result<()> {
        const CHUNK_BYTES: usize = 4 << 20;
        // No bigger than the segment: opening many small partitions must not
        // zero 4 MiB for each.
        let chunk_bytes = CHUNK_BYTES.min(self.readable_bytes as usize);
        let mut chunk = vec![0u8; chunk_bytes];
        let mut chunk_start = 0u64;
        let mut chunk_len = 0usize;
        let mut pos = 0u64;
        // Bounded by the segment size: every step advances by a whole batch.
        while pos + BATCH_HEADER_BYTES as u64 <= self.readable_bytes {
            let in_chunk = pos >= chunk_start && pos + BATCH_HEADER_BYTES as u64 <= chunk_start + chunk_len as u64;
            if !in_chunk {
                chunk_start = pos;
                chunk_len = (self.readable_bytes - pos).min(chunk_bytes as u64) as usize;
                self.file.read_exact_at(&mut chunk[..chunk_len], pos)?;
            }
            let at = (pos - chunk_start) as usize;
            let Some(header) = BatchHeader::parse(&chunk[at..chunk_len]) else {
                break;
            };
            if header.total_bytes() < BATCH_HEADER_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt batch length in segment",
                ));
            }
            let marker = if header.is_control() {
                self.read_marker_at(pos, &header)?
            } else {
                None
            };
            f(&header, marker);
            pos += header.total_bytes() as u64;
        }
        Ok(())
    }

    /// What the control batch at `pos` says; markers are a few dozen bytes,
    /// so one claiming more than `CONTROL_BATCH_BYTES_MAX` is none.
    fn read_marker_at(&self, pos: u64, header: &BatchHeader) -> io::Result<Option<(Marker, i32)>> {
        const CONTROL_BATCH_BYTES_MAX: usize = 4096;
        let bytes = header.total_bytes();
        if bytes > CONTROL_BATCH_BYTES_MAX || pos + bytes as u64 > self.readable_bytes {
            return Ok(None);
        }
        let mut batch = vec![0u8; bytes];
        self.file.read_exact_at(&mut batch, pos)?;
        Ok(record::control::read_marker(&batch))
    }

    pub fn flush_indexes(&mut self) -> io::Result<()> {
        self.index.flush()?;
        self.time_index.flush()?;
        self.txn_index.flush()
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.index.sync()?;
        self.time_index.sync()?;
        self.txn_index.sync()
    }

    /// Removes the segment's files on compio's blocking pool, off the event
    /// loop (unlinking a large file frees its extents, which takes a while):
    /// for segments below the log start, whose names are never used again.
    pub fn delete_files_in_background(&self) {
        let paths = self.file_paths();
        compio::runtime::spawn_blocking(move || {
            for path in paths {
                if let Err(e) = remove_if_present(&path) {
                    tracing::warn!(path = %path.display(), "removing a deleted segment failed: {e}");
                }
            }
        })
        .detach();
    }

    /// The segment's log, offset index, time index and transaction index
    /// files (the last may not exist: see `remove_if_present`).
    pub fn file_paths(&self) -> [PathBuf; 4] {
        [
            self.log_path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
        ]
    }

    /// Removes the segment's files. Fetches in flight keep their `Arc<File>` and finish.
    pub fn delete_files(&self) -> io::Result<()> {
        self.file_paths().iter().try_for_each(|path| remove_if_present(path))
    }
}

/// Removes a segment's file; one that is not there (a `.txnindex` of a
/// segment with no abort) is no error.
pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::build_batch;

    fn append(seg: &mut Segment, values: &[&[u8]], ts: i64) -> u64 {
        let mut b = build_batch(values, ts, -1, -1);
        record::assign_offset(&mut b, seg.next_offset, 0);
        let h = BatchHeader::parse(&b).unwrap();
        let pos = seg.reserve(&h, b.len() as u64, 100);
        seg.file.write_all_at(&b, pos).unwrap();
        seg.readable_bytes = seg.size_bytes;
        pos
    }

    #[test]
    fn locate_and_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100, 0).unwrap();
        for i in 0..50 {
            append(
                &mut seg,
                &[b"aaaaaaaaaaaaaaaaaaaa", b"bbbbbbbbbbbbbbbbbbbbbbbbb"],
                1000 + i * 10,
            );
        }
        assert_eq!(seg.next_offset, 200);
        let (_, h) = seg.locate(100).unwrap().unwrap();
        assert_eq!(h.base_offset, 100);
        let (_, h) = seg.locate(157).unwrap().unwrap();
        assert_eq!(h.base_offset, 156);
        assert!(seg.locate(200).unwrap().is_none());
        assert_eq!(seg.offset_for_timestamp(1000).unwrap(), Some((100, 1000)));
        assert_eq!(seg.offset_for_timestamp(1101).unwrap(), Some((121, 1101)));
        assert_eq!(seg.offset_for_timestamp(5000).unwrap(), None);
    }

    #[test]
    fn recovery_truncates_torn_tail_and_rebuilds_lost_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        for i in 0..20 {
            append(&mut seg, &[b"0123456789"], i);
        }
        seg.flush_indexes().unwrap();
        let good = seg.size_bytes;
        // A torn write: half a batch after the good data.
        seg.file.write_all_at(&[2u8; 40], good).unwrap();
        drop(seg);
        let (seg, stats) = Segment::open(dir.path(), 0, 0, 100).unwrap();
        assert_eq!(stats.bytes_truncated, 40);
        assert_eq!(seg.next_offset, 20);
        assert_eq!(seg.size_bytes, good);
        drop(seg);
        // Lose the index entirely and corrupt the last batch's payload.
        std::fs::remove_file(dir.path().join(segment_file_name(0, "index"))).unwrap();
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(segment_file_name(0, "log")))
            .unwrap();
        f.write_all_at(&[0xff], good - 3).unwrap();
        let (seg, stats) = Segment::open(dir.path(), 0, 0, 100).unwrap();
        assert!(stats.index_rebuilt);
        assert_eq!(seg.next_offset, 19, "the corrupt last batch is cut off");
        assert!(seg.locate(18).unwrap().is_some());
        assert!(seg.locate(19).unwrap().is_none());
    }
}
