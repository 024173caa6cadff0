//! Producer state snapshots, as Kafka's `.snapshot` files: the producer
//! states of a partition as of an offset, written when a segment rolls and
//! when the log closes, so a restart replays only the batches after the
//! newest one. Without them a producer silent for longer than the batches
//! re-read would be forgotten, and its next batch taken at any sequence.
//!
//! A file is `<offset, 20 digits>.snapshot`: a CRC32C of the rest, then
//! `ProducerStates::encode`. A file that fails its CRC or does not decode
//! is ignored and removed; the log then falls back to re-reading.

use std::io;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::producer::ProducerStates;
use super::segment::segment_file_name;
use super::space;

const EXTENSION: &str = "snapshot";
/// The largest snapshot read back: 10,000 producers of five batches each
/// stay far below it.
const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;

fn path_of(dir: &Path, offset: i64) -> PathBuf {
    dir.join(segment_file_name(offset, EXTENSION))
}

/// The offsets of the snapshots in `dir`, ascending.
pub fn offsets(dir: &Path) -> io::Result<Vec<i64>> {
    let mut found: Vec<i64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".snapshot")?.parse::<i64>().ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// A snapshot file's bytes for `states`: taken on the event loop, under the
/// log's state, and written off it (`write`).
pub fn encode(states: &ProducerStates) -> Vec<u8> {
    let body = states.encode();
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Writes the snapshot (`encode`) of the state as of `offset`: every batch
/// below it applied. Not fsynced: a snapshot lost with the page cache only
/// costs a longer replay, and one whose batches were lost with it lies past
/// the recovered log end and is removed.
pub fn write(dir: &Path, offset: i64, bytes: &[u8]) -> io::Result<()> {
    space::replace_file(&path_of(dir, offset), bytes, false)
}

/// The newest readable snapshot in `start..=end` (the log's offsets), as
/// (offset, states). Unreadable ones, and any past `end` (their batches
/// are gone from the log), are removed.
pub fn load_newest(dir: &Path, start: i64, end: i64, now_ms: i64) -> io::Result<Option<(i64, ProducerStates)>> {
    remove_after(dir, end)?;
    for offset in offsets(dir)?.into_iter().rev().filter(|o| *o >= start) {
        match read(dir, offset, now_ms) {
            Some(states) => return Ok(Some((offset, states))),
            None => {
                warn!(dir = %dir.display(), offset, "unreadable producer snapshot; removing it");
                let _ = std::fs::remove_file(path_of(dir, offset));
            }
        }
    }
    Ok(None)
}

fn read(dir: &Path, offset: i64, now_ms: i64) -> Option<ProducerStates> {
    let path = path_of(dir, offset);
    if std::fs::metadata(&path).ok()?.len() > SNAPSHOT_BYTES_MAX {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    let (crc, body) = bytes.split_first_chunk::<4>()?;
    (u32::from_be_bytes(*crc) == crc32c::crc32c(body)).then_some(())?;
    ProducerStates::decode(body, now_ms)
}

/// Removes the snapshots past `offset`: the log was cut there.
pub fn remove_after(dir: &Path, offset: i64) -> io::Result<()> {
    for later in offsets(dir)?.into_iter().filter(|o| *o > offset) {
        std::fs::remove_file(path_of(dir, later))?;
    }
    Ok(())
}

/// Removes the snapshots below `offset`, the new log start: recovery never
/// starts from one (Kafka keeps snapshots from the log start on).
pub fn remove_below(dir: &Path, offset: i64) -> io::Result<()> {
    for earlier in offsets(dir)?.into_iter().filter(|o| *o < offset) {
        std::fs::remove_file(path_of(dir, earlier))?;
    }
    Ok(())
}
