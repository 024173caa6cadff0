//! Space held back on the data dir's filesystem for the writes that free
//! space: metadata, the metadata quorum's log and checkpoints.
//!
//! A full disk must not trap the operator: deleting a topic stores a metadata
//! change before the topic's files go, and that write needs a few blocks. At
//! start the broker writes `RESERVE_FILE` (`RESERVE_BYTES` of zeros) into its
//! data dir. A small durable write that finds the disk full releases the
//! reserve (deletes the file) and tries once more. While the reserve is
//! released, partition appends are refused (`is_released`), so producers
//! retrying against a full disk cannot eat the released blocks before the
//! metadata write that needed them. The broker's maintenance tick writes the
//! reserve back (`replenish`) once there is room for it again.
//!
//! One data dir per process: the reserve's place is set once (`install`).
//! Without it (unit tests) the writes here go straight to the filesystem.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub const RESERVE_FILE: &str = ".sluice-space-reserve";
/// Room for thousands of metadata changes and checkpoints: the metadata
/// snapshot of a broker with a thousand topics is well under a megabyte.
pub const RESERVE_BYTES: u64 = 8 << 20;
/// Free room, beyond the reserve itself, needed before the reserve is
/// written back: writing it into the last free blocks would only fill the
/// disk again.
const REPLENISH_HEADROOM_BYTES: u64 = RESERVE_BYTES;

static RESERVE_PATH: OnceLock<PathBuf> = OnceLock::new();
static RELEASED: AtomicBool = AtomicBool::new(false);
/// Held while one thread writes the reserve back.
static REPLENISHING: AtomicBool = AtomicBool::new(false);

/// Whether `e` says the filesystem is out of space (ENOSPC, or EDQUOT).
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Sets the data dir whose filesystem the reserve lives on and writes the
/// reserve if it is missing. A disk already too full for it starts with the
/// reserve released (appends refused) until `replenish` succeeds.
pub fn install(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(RESERVE_FILE);
    if RESERVE_PATH.set(path.clone()).is_err() {
        assert_eq!(RESERVE_PATH.get(), Some(&path), "one data dir per process");
    }
    match write_reserve(&path) {
        Ok(()) => Ok(()),
        Err(e) if is_full(&e) => {
            tracing::warn!(
                "the data dir's disk is full: partition appends wait until there is room for the space reserve"
            );
            RELEASED.store(true, Ordering::SeqCst);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Whether the reserve is released: the disk was full for a write that frees
/// space, and partition appends are refused until it is written back.
pub fn is_released() -> bool {
    RELEASED.load(Ordering::SeqCst)
}

/// Runs `op`; if it finds the disk full, releases the reserve and runs it
/// once more. `op` must leave nothing half-written behind when it fails.
pub fn with_reserve<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if is_full(&e) && release() => {
            tracing::warn!("the disk is full: released the space reserve for a metadata write");
            op()
        }
        other => other,
    }
}

/// Deletes the reserve file. Returns whether there was a reserve to release.
fn release() -> bool {
    let Some(path) = RESERVE_PATH.get() else {
        return false;
    };
    RELEASED.store(true, Ordering::SeqCst);
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!("cannot release the space reserve: {e}");
            false
        }
    }
}

/// Writes the reserve back if it is released and the disk has room for it
/// and for `REPLENISH_HEADROOM_BYTES` more (probed by writing both, then
/// giving the headroom back). Blocking: call it off the event loop. Returns
/// whether the reserve is in place.
pub fn replenish() -> bool {
    let Some(path) = RESERVE_PATH.get() else {
        return true;
    };
    if !is_released() {
        return true;
    }
    if REPLENISHING.swap(true, Ordering::SeqCst) {
        return false;
    }
    let probe = path.with_extension("probe");
    let written = write_zeros(&probe, REPLENISH_HEADROOM_BYTES).and_then(|()| write_reserve(path));
    let _ = std::fs::remove_file(&probe);
    let in_place = match written {
        Ok(()) => {
            RELEASED.store(false, Ordering::SeqCst);
            tracing::info!("the space reserve is back: partition appends resume");
            true
        }
        Err(e) => {
            if !is_full(&e) {
                tracing::warn!("cannot write the space reserve back: {e}");
            }
            false
        }
    };
    REPLENISHING.store(false, Ordering::SeqCst);
    in_place
}

fn write_reserve(path: &Path) -> io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let written = write_zeros(&tmp, RESERVE_BYTES).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes `bytes` zeros to a new file at `path` and fsyncs it, so its blocks
/// are allocated (a sparse file would reserve nothing).
fn write_zeros(path: &Path, bytes: u64) -> io::Result<()> {
    const CHUNK_BYTES: usize = 1 << 20;
    let chunk = vec![0u8; CHUNK_BYTES];
    let mut file = std::fs::File::create(path)?;
    let mut left = bytes;
    // Bounded: `left` shrinks by a chunk each round.
    while left > 0 {
        let n = left.min(CHUNK_BYTES as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Replaces the file at `path` with `bytes` atomically: a temporary file,
/// (fsync,) rename, (fsync of the directory). `durable` asks for both fsyncs.
/// Uses the reserve when the disk is full; a failed try removes its
/// temporary file, so the retry starts from nothing.
pub fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    with_reserve(|| {
        let written = write_then_rename(&tmp, path, bytes, durable);
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut file = std::fs::File::create(tmp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    std::fs::rename(tmp, path)?;
    if durable && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace_file(&path, b"one", true).unwrap();
        replace_file(&path, b"second", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state")]);
    }

    #[test]
    fn a_full_disk_is_recognised() {
        assert!(is_full(&io::Error::from_raw_os_error(28)));
        assert!(!is_full(&io::Error::from_raw_os_error(5)));
    }
}
