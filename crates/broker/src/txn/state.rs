//! One transactional id's state and its transitions, as Kafka's
//! TransactionMetadata keeps them (transaction version 1: the epoch moves
//! only at InitProducerId and when a transaction is fenced). Pure: the
//! coordinator stores each new state before it becomes current.

use std::collections::BTreeSet;

use crate::model::{ErrorCode, TopicPartition};

/// The states of Kafka's TransactionState, with its stored codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnStatus {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            7 => Self::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state of a ListTransactions filter's name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        (0..=7).filter_map(Self::from_code).find(|s| s.name() == name)
    }

    fn is_prepare(self) -> bool {
        matches!(self, Self::PrepareCommit | Self::PrepareAbort)
    }
}

/// A producer epoch this close to the top cannot be bumped again: the id is rotated.
const EPOCH_MAX: i16 = i16::MAX - 1;

/// What the coordinator knows of one transactional id: exactly what its
/// latest `__transaction_state` record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The id before the last rotation, so a retried InitProducerId is known.
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (KIP-360 retries); -1 for none.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the open transaction began (its first AddPartitionsToTxn); -1 for none.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// A producer id and epoch the client says it has (InitProducerId v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// What an InitProducerId leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum InitPlan {
    /// Store this state and answer with its id and epoch.
    Store(TxnMetadata),
    /// The id has an open transaction: store this (PrepareAbort with the
    /// epoch bumped, which fences the old producer), finish the abort, and
    /// answer CONCURRENT_TRANSACTIONS so the client retries.
    FenceAndAbort(TxnMetadata),
    /// The producer's epoch is exhausted: allocate a new id, then `rotate`.
    Rotate,
}

impl TxnMetadata {
    /// A transactional id seen for the first time.
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        Self {
            transactional_id,
            producer_id,
            previous_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }

    /// InitProducerId: the next state, or Kafka's error.
    pub fn plan_init(&self, timeout_ms: i32, expected: Option<Expected>, now_ms: i64) -> Result<InitPlan, ErrorCode> {
        if let Some(e) = expected {
            let known = self.producer_epoch == -1
                || e.producer_id == self.producer_id
                || (e.producer_id == self.previous_producer_id && e.producer_epoch >= EPOCH_MAX);
            if !known {
                return Err(ErrorCode::ProducerFenced);
            }
        }
        match self.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => Err(ErrorCode::ConcurrentTransactions),
            TxnStatus::Ongoing => {
                let mut next = self.clone();
                next.producer_epoch = self.producer_epoch.saturating_add(1);
                next.last_producer_epoch = -1;
                next.status = TxnStatus::PrepareAbort;
                next.last_update_ms = now_ms;
                Ok(InitPlan::FenceAndAbort(next))
            }
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                let exhausted = self.producer_epoch >= EPOCH_MAX;
                if exhausted && expected.is_none_or(|e| e.producer_epoch == self.producer_epoch) {
                    return Ok(InitPlan::Rotate);
                }
                let mut next = self.clone();
                match expected {
                    // A retry of a bump whose answer was lost: the bumped epoch again.
                    Some(e) if self.last_producer_epoch >= 0 && e.producer_epoch == self.last_producer_epoch => {}
                    Some(e) if e.producer_epoch != self.producer_epoch && self.producer_epoch != -1 => {
                        return Err(ErrorCode::ProducerFenced);
                    }
                    _ => {
                        next.last_producer_epoch = self.producer_epoch;
                        next.producer_epoch = self.producer_epoch.saturating_add(1);
                    }
                }
                next.become_empty(timeout_ms, now_ms);
                Ok(InitPlan::Store(next))
            }
            TxnStatus::Dead | TxnStatus::PrepareEpochFence => Err(ErrorCode::ConcurrentTransactions),
        }
    }

    /// InitProducerId once the epoch is exhausted: a new id at epoch 0.
    pub fn rotate(&self, new_producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.previous_producer_id = self.producer_id;
        next.producer_id = new_producer_id;
        next.producer_epoch = 0;
        next.last_producer_epoch = -1;
        next.become_empty(timeout_ms, now_ms);
        next
    }

    fn become_empty(&mut self, timeout_ms: i32, now_ms: i64) {
        self.timeout_ms = timeout_ms;
        self.status = TxnStatus::Empty;
        self.partitions.clear();
        self.start_ms = -1;
        self.last_update_ms = now_ms;
    }

    /// Checks that a request comes from the current producer of this id.
    pub fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ErrorCode> {
        if self.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if self.producer_epoch != producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn): `None` when every
    /// partition is in the transaction already (nothing to store).
    pub fn plan_add(
        &self,
        producer: (i64, i16),
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ErrorCode> {
        self.check_producer(producer.0, producer.1)?;
        if self.status.is_prepare() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        if matches!(self.status, TxnStatus::Dead | TxnStatus::PrepareEpochFence) {
            return Err(ErrorCode::InvalidTxnState);
        }
        if self.status == TxnStatus::Ongoing && partitions.iter().all(|p| self.partitions.contains(p)) {
            return Ok(None);
        }
        let mut next = self.clone();
        if self.status != TxnStatus::Ongoing {
            next.start_ms = now_ms;
            next.partitions.clear();
        }
        next.partitions.extend(partitions.iter().cloned());
        next.status = TxnStatus::Ongoing;
        next.last_update_ms = now_ms;
        Ok(Some(next))
    }

    /// EndTxn from the client: the Prepare state to store, or `None` when
    /// the transaction already ended that way (a retry: answer success).
    pub fn plan_end(&self, producer: (i64, i16), commit: bool, now_ms: i64) -> Result<Option<TxnMetadata>, ErrorCode> {
        self.check_producer(producer.0, producer.1)?;
        let wrong = Err(ErrorCode::InvalidTxnState);
        match (self.status, commit) {
            (TxnStatus::Ongoing, _) => Ok(Some(self.prepare(commit, now_ms))),
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => Ok(None),
            (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            _ => wrong,
        }
    }

    /// The coordinator aborts an open transaction that outlived its timeout
    /// (the coordinator keeps the deadline, on the monotonic clock), bumping
    /// the epoch so the producer is fenced.
    pub fn plan_timeout_abort(&self, now_ms: i64) -> Option<TxnMetadata> {
        if self.status != TxnStatus::Ongoing {
            return None;
        }
        let mut next = self.prepare(false, now_ms);
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.last_producer_epoch = -1;
        Some(next)
    }

    fn prepare(&self, commit: bool, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.status = if commit {
            TxnStatus::PrepareCommit
        } else {
            TxnStatus::PrepareAbort
        };
        next.last_update_ms = now_ms;
        next
    }

    /// Every marker is written: the Complete state.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        assert!(self.status.is_prepare(), "only a prepared transaction completes");
        let mut next = self.clone();
        next.status = match self.status {
            TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
            _ => TxnStatus::CompleteAbort,
        };
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now_ms;
        next
    }

    /// Whether the markers of this state are still to be written (a
    /// coordinator that took over in Prepare finishes them).
    pub fn is_prepared(&self) -> bool {
        self.status.is_prepare()
    }

    /// No transaction open or ending: an id that may expire.
    pub fn is_idle(&self) -> bool {
        matches!(
            self.status,
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn stored(plan: Result<InitPlan, ErrorCode>) -> TxnMetadata {
        match plan {
            Ok(InitPlan::Store(m)) => m,
            other => panic!("expected a state to store, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_goes_from_init_through_add_and_commit_to_complete() {
        let fresh = TxnMetadata::new("tx".into(), 1000, 60_000, 0);
        let empty = stored(fresh.plan_init(60_000, None, 1));
        assert_eq!((empty.producer_epoch, empty.status), (0, TxnStatus::Empty));
        let ongoing = empty.plan_add((1000, 0), &[tp(0), tp(1)], 2).unwrap().unwrap();
        assert_eq!((ongoing.status, ongoing.start_ms), (TxnStatus::Ongoing, 2));
        assert_eq!(ongoing.plan_add((1000, 0), &[tp(1)], 3), Ok(None), "already in");
        let prepared = ongoing.plan_end((1000, 0), true, 4).unwrap().unwrap();
        assert_eq!(prepared.status, TxnStatus::PrepareCommit);
        assert_eq!(
            prepared.plan_end((1000, 0), true, 5),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(prepared.plan_end((1000, 0), false, 5), Err(ErrorCode::InvalidTxnState));
        assert_eq!(
            prepared.plan_add((1000, 0), &[tp(2)], 5),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let complete = prepared.complete(6);
        assert_eq!(complete.status, TxnStatus::CompleteCommit);
        assert!(complete.partitions.is_empty());
        assert_eq!(
            complete.plan_end((1000, 0), true, 7),
            Ok(None),
            "a retried commit succeeds"
        );
        assert_eq!(complete.plan_end((1000, 0), false, 7), Err(ErrorCode::InvalidTxnState));
        assert_eq!(empty.plan_end((1000, 0), true, 7), Err(ErrorCode::InvalidTxnState));
    }

    #[test]
    fn a_second_producer_fences_the_first_and_aborts_its_open_transaction() {
        let empty = stored(TxnMetadata::new("tx".into(), 1000, 60_000, 0).plan_init(60_000, None, 1));
        let ongoing = empty.plan_add((1000, 0), &[tp(0)], 2).unwrap().unwrap();
        let Ok(InitPlan::FenceAndAbort(fenced)) = ongoing.plan_init(60_000, None, 3) else {
            panic!("an open transaction is aborted first");
        };
        assert_eq!((fenced.producer_epoch, fenced.status), (1, TxnStatus::PrepareAbort));
        assert_eq!(fenced.plan_add((1000, 0), &[tp(1)], 4), Err(ErrorCode::ProducerFenced));
        assert_eq!(fenced.plan_end((1000, 0), true, 4), Err(ErrorCode::ProducerFenced));
        assert_eq!(
            fenced.plan_end((999, 1), true, 4),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let aborted = fenced.complete(5);
        let reinit = stored(aborted.plan_init(60_000, None, 6));
        assert_eq!((reinit.producer_epoch, reinit.status), (2, TxnStatus::Empty));
    }

    #[test]
    fn timeouts_abort_with_a_bump_and_exhausted_epochs_rotate_the_id() {
        let empty = stored(TxnMetadata::new("tx".into(), 1000, 100, 0).plan_init(100, None, 0));
        let ongoing = empty.plan_add((1000, 0), &[tp(0)], 10).unwrap().unwrap();
        assert_eq!(empty.plan_timeout_abort(111), None, "nothing open");
        let aborted = ongoing.plan_timeout_abort(111).unwrap();
        assert_eq!((aborted.status, aborted.producer_epoch), (TxnStatus::PrepareAbort, 1));
        let mut worn = empty.clone();
        worn.producer_epoch = EPOCH_MAX;
        assert_eq!(worn.plan_init(100, None, 1), Ok(InitPlan::Rotate));
        let rotated = worn.rotate(2000, 100, 1);
        assert_eq!(
            (
                rotated.producer_id,
                rotated.producer_epoch,
                rotated.previous_producer_id
            ),
            (2000, 0, 1000)
        );
        // KIP-360: the client names the id and epoch it has.
        let expected = |producer_id, producer_epoch| {
            Some(Expected {
                producer_id,
                producer_epoch,
            })
        };
        assert_eq!(empty.plan_init(100, expected(7, 0), 1), Err(ErrorCode::ProducerFenced));
        let bumped = stored(empty.plan_init(100, expected(1000, 0), 1));
        assert_eq!(bumped.producer_epoch, 1);
        assert_eq!(
            stored(bumped.plan_init(100, expected(1000, 0), 2)).producer_epoch,
            1,
            "a retry"
        );
        assert!(bumped.is_idle() && !ongoing.is_idle());
    }
}
