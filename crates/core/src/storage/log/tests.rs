use super::*;
use crate::record::BatchHeader;
use crate::record::tests::build_batch;
use bytes::BytesMut;

fn batch(values: &[&[u8]], producer_id: i64, base_seq: i32) -> BytesMut {
    BytesMut::from(&build_batch(values, 1_000, producer_id, base_seq)[..])
}

/// The stored bytes of `log` from `offset` on, read back through a fetch slice.
fn stored_bytes(log: &PartitionLog, offset: i64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let slice = log.read(offset, u64::MAX, true).unwrap().slice.expect("data");
    let mut buf = vec![0u8; slice.bytes as usize];
    slice.file.read_exact_at(&mut buf, slice.position).unwrap();
    buf
}

#[test]
fn a_replica_stores_the_leaders_batches_byte_for_byte() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tp = TopicPartition::new("t", 0);
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let leader = PartitionLog::open(dirs.0.path(), tp.clone(), LogConfig::default(), 0).unwrap();
        let follower = PartitionLog::open(dirs.1.path(), tp.clone(), LogConfig::default(), 0).unwrap();
        for seq in 0..3 {
            leader
                .append(batch(&[b"a", b"bb"], 7, seq * 2), 5, LEADER_EPOCH)
                .await
                .unwrap();
        }
        let bytes = stored_bytes(&leader, 0);
        let mut at = 0;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).unwrap();
            let end = at + header.total_bytes();
            let next = follower
                .append_replicated(BytesMut::from(&bytes[at..end]), 5)
                .await
                .unwrap();
            assert_eq!(next, header.next_offset());
            at = end;
        }
        assert_eq!(follower.high_watermark(), 6);
        assert_eq!(stored_bytes(&follower, 0), bytes, "byte-identical replica");
        // A whole run of batches at once: one write, the same bytes.
        let dir = tempfile::tempdir().unwrap();
        let run = PartitionLog::open(dir.path(), tp.clone(), LogConfig::default(), 0).unwrap();
        assert_eq!(run.append_replicated(BytesMut::from(&bytes[..]), 5).await.unwrap(), 6);
        assert_eq!(stored_bytes(&run, 0), bytes, "byte-identical replica from one run");
        // A refused batch in a run keeps the ones before it.
        let dir = tempfile::tempdir().unwrap();
        let partial = PartitionLog::open(dir.path(), tp.clone(), LogConfig::default(), 0).unwrap();
        let mut damaged = BytesMut::from(&bytes[..]);
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        let refused = partial.append_replicated(damaged, 5).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::CorruptMessage);
        assert_eq!(
            partial.log_end_offset(),
            4,
            "the two whole batches before the damaged one landed"
        );
        // A batch that does not start at the log end is refused, as is a corrupt one.
        let first = BatchHeader::parse(&bytes).unwrap().total_bytes();
        let stale = follower.append_replicated(BytesMut::from(&bytes[..first]), 5).await;
        assert_eq!(stale.unwrap_err().code, ErrorCode::OffsetOutOfRange);
        let mut corrupt = BytesMut::from(&bytes[..first]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert_eq!(
            follower.append_replicated(corrupt, 5).await.unwrap_err().code,
            ErrorCode::CorruptMessage
        );
        assert_eq!(follower.high_watermark(), 6, "nothing was appended");
    });
}

#[test]
fn appends_reads_duplicates_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t", 0);
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), tp.clone(), config.clone(), 0).unwrap();
        for seq in 0..10 {
            let info = log
                .append(batch(&[b"0123456789", b"abcdefghij"], 7, seq * 2), 5, LEADER_EPOCH)
                .await
                .unwrap();
            assert_eq!(info.base_offset, seq as i64 * 2);
        }
        assert_eq!(log.high_watermark(), 20);
        assert!(log.segment_count() > 2, "segment.bytes=300 rolls");
        let dup = log
            .append(batch(&[b"0123456789", b"abcdefghij"], 7, 18), 5, LEADER_EPOCH)
            .await
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, 18);
        let read = log.read(4, 1, true).unwrap();
        let slice = read.slice.expect("data at offset 4");
        assert!(slice.bytes > 1, "at least one whole batch (KIP-74)");
        assert_eq!(log.read(21, 100, true).unwrap_err(), ErrorCode::OffsetOutOfRange);
        assert!(log.read(20, 100, true).unwrap().slice.is_none());
        log.flush_indexes().unwrap();
    });
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), tp, config, 0).unwrap();
        assert_eq!(log.high_watermark(), 20);
        // The producer's sequences survive the restart: a retry is still a duplicate.
        let dup = log
            .append(batch(&[b"0123456789", b"abcdefghij"], 7, 18), 5, LEADER_EPOCH)
            .await
            .unwrap();
        assert!(dup.duplicate && dup.base_offset == 18);
        let gap = log.append(batch(&[b"x"], 7, 30), 5, LEADER_EPOCH).await.unwrap_err();
        assert_eq!(gap.code, ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!(
            log.append(batch(&[b"x"], 7, 20), 5, LEADER_EPOCH)
                .await
                .unwrap()
                .base_offset,
            20
        );
    });
}

#[test]
fn flush_policy_by_messages_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 3,
        ..LogConfig::default()
    };
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), TopicPartition::new("f", 0), config, 0).unwrap();
        log.append(batch(&[b"a", b"b"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        assert_eq!(log.unflushed_messages(), 2);
        log.append(batch(&[b"c"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        assert_eq!(log.unflushed_messages(), 0, "flush.messages=3 fsynced");
        log.set_config(LogConfig {
            flush_ms: 100,
            ..LogConfig::default()
        });
        log.append(batch(&[b"d"], -1, -1), 1_000, LEADER_EPOCH).await.unwrap();
        log.flush_if_due(1_050).await.unwrap();
        assert_eq!(log.unflushed_messages(), 1, "younger than flush.ms");
        log.flush_if_due(1_100).await.unwrap();
        assert_eq!(log.unflushed_messages(), 0, "flush.ms=100 fsynced");
        assert_eq!(log.flushed_offset(), log.log_end_offset());
    });
}

#[test]
fn concurrent_appends_keep_their_order_through_rolls_ahead() {
    const APPENDS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 200,
        ..LogConfig::default()
    };
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = std::rc::Rc::new(PartitionLog::open(dir.path(), TopicPartition::new("r", 0), config, 0).unwrap());
        // Appends keep arriving while rolls wait on the blocking pool, as
        // pipelined produce requests do.
        let mut appends = Vec::new();
        for i in 0..APPENDS {
            let log = std::rc::Rc::clone(&log);
            let value = format!("v{i}");
            appends.push(compio::runtime::spawn(async move {
                log.append(batch(&[value.as_bytes()], -1, -1), 0, LEADER_EPOCH)
                    .await
                    .unwrap()
                    .base_offset
            }));
            // Varied gaps, so new appends land at every point of a roll.
            if i % 3 == 0 {
                compio::time::sleep(std::time::Duration::from_micros((i % 7) as u64 * 20)).await;
            }
        }
        let mut bases = Vec::new();
        for append in appends {
            bases.push(append.await.unwrap());
        }
        assert_eq!(
            bases,
            (0..APPENDS as i64).collect::<Vec<_>>(),
            "offsets follow the order the appends came in, through every roll"
        );
        assert!(log.segment_count() > 20, "the appends rolled many segments");
        let logs = std::fs::read_dir(dir.path().join("r-0"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
            .count();
        assert_eq!(logs, log.segment_count(), "no stray file from a raced roll");
        drop(log);
        let reopened = PartitionLog::open(dir.path(), TopicPartition::new("r", 0), LogConfig::default(), 0).unwrap();
        assert_eq!(reopened.log_end_offset(), APPENDS as i64);
    });
}

#[test]
fn a_new_leader_epoch_is_on_disk_before_its_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), TopicPartition::new("e", 0), LogConfig::default(), 0).unwrap();
        let checkpoint = dir.path().join("e-0").join(super::super::epoch::CHECKPOINT_FILE);
        log.become_leader(3);
        assert_eq!(log.latest_epoch(), Some(3), "the epoch is known at once");
        assert!(!checkpoint.exists(), "and written only off the event loop");
        let stale = log.append(batch(&[b"a"], -1, -1), 0, LEADER_EPOCH).await.unwrap_err();
        assert_eq!(
            stale.code,
            ErrorCode::NotLeaderOrFollower,
            "a batch for another epoch is refused"
        );
        assert_eq!(log.log_end_offset(), 0, "and nothing of it is written");
        let info = log.append(batch(&[b"a", b"b"], -1, -1), 0, 3).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset, info.leader_epoch), (0, 1, 3));
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n3 0\n");
        log.become_leader(5);
        log.make_epochs_durable().await.unwrap();
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n2\n3 0\n5 2\n");
    });
}

#[test]
fn rolled_segments_are_flushed_each_with_its_own_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 3,
        segment_bytes: 1,
        ..LogConfig::default()
    };
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), TopicPartition::new("r", 0), config, 0).unwrap();
        let before = crate::storage::fsyncs();
        // Every append after the first rolls a segment (segment.bytes = 1).
        log.append(batch(&[b"a"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        log.append(batch(&[b"b"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        assert_eq!(
            log.flushed_offset(),
            0,
            "nothing fsynced before flush.messages is reached"
        );
        log.append(batch(&[b"c"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        assert_eq!(
            log.flushed_offset(),
            3,
            "the rolled segments are fsynced with the active one"
        );
        assert_eq!(
            crate::storage::fsyncs() - before,
            3,
            "one fsync per segment with unflushed writes"
        );
        // With the default policy a roll alone makes the closed segment due.
        log.set_config(LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        });
        log.append(batch(&[b"d"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        log.append(batch(&[b"e"], -1, -1), 0, LEADER_EPOCH).await.unwrap();
        assert_eq!(log.flushed_offset(), 3);
        log.flush_if_due(0).await.unwrap();
        assert_eq!(
            log.flushed_offset(),
            5,
            "a rolled segment is synced by the next maintenance tick"
        );
    });
}

/// Producer 7 writes once, then other producers fill more segments than a
/// restart re-reads. Whether producer 7 is still known after the restart.
fn silent_producer_known_after_restart(snapshot_at_close: bool, damage: bool) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t", 0);
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), tp.clone(), config.clone(), 0).unwrap();
        log.append(batch(&[b"silent"], 7, 0), 5, LEADER_EPOCH).await.unwrap();
        for seq in 0..20 {
            let values: &[&[u8]] = &[b"0123456789", b"abcdefghij"];
            log.append(batch(values, 8, seq * 2), 5, LEADER_EPOCH).await.unwrap();
        }
        assert!(log.segment_count() > 4, "segment.bytes=300 rolls");
        if snapshot_at_close {
            log.write_producer_snapshot().await.unwrap();
        }
        log.flush_indexes().unwrap();
    });
    let partition_dir = dir.path().join(tp.dir_name());
    let snapshots = crate::storage::producer_snapshot::offsets(&partition_dir).unwrap();
    assert!(snapshots.len() > 1, "one per roll, and one at close: {snapshots:?}");
    if !snapshot_at_close {
        for offset in &snapshots {
            std::fs::remove_file(partition_dir.join(format!("{offset:020}.snapshot"))).unwrap();
        }
    } else if damage {
        let newest = partition_dir.join(format!("{:020}.snapshot", snapshots.last().unwrap()));
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[6] ^= 0xff;
        std::fs::write(&newest, bytes).unwrap();
    }
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), tp, config, 0).unwrap();
        let retry = log.append(batch(&[b"silent"], 7, 0), 5, LEADER_EPOCH).await.unwrap();
        retry.duplicate && retry.base_offset == 0
    })
}

#[test]
fn producer_snapshots_keep_a_silent_producer_across_a_restart() {
    assert!(
        silent_producer_known_after_restart(true, false),
        "the snapshot at close knows it"
    );
    assert!(
        silent_producer_known_after_restart(true, true),
        "a damaged newest snapshot is skipped for the one of the last roll"
    );
    assert!(
        !silent_producer_known_after_restart(false, false),
        "without snapshots only the newest segments are re-read"
    );
}

#[test]
fn a_truncation_removes_the_snapshots_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t", 0);
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    compio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PartitionLog::open(dir.path(), tp, config, 0).unwrap();
        for seq in 0..10 {
            let values: &[&[u8]] = &[b"0123456789", b"abcdefghij"];
            log.append(batch(values, 8, seq * 2), 5, LEADER_EPOCH).await.unwrap();
        }
        log.write_producer_snapshot().await.unwrap();
        let partition_dir = dir.path().join("t-0");
        let before = crate::storage::producer_snapshot::offsets(&partition_dir).unwrap();
        assert!(before.contains(&20), "the snapshot at the log end: {before:?}");
        let end = log.truncate_to(5).await.unwrap();
        let left = crate::storage::producer_snapshot::offsets(&partition_dir).unwrap();
        assert!(
            left.iter().all(|o| *o <= end),
            "none past the cut: {left:?} beyond {end}"
        );
    });
}
