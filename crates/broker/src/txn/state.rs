//! One transactional id's state and its transitions, as Kafka's
//! TransactionMetadata keeps them. With transaction version 1 the epoch
//! moves only at InitProducerId and when a transaction is fenced; with
//! version 2 (KIP-890 part 2) every commit or abort bumps it too, so the
//! markers carry an epoch no batch of the ended transaction has. Pure: the
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
    /// The id the producer moves to when its prepared transaction completes
    /// (version 2, epoch exhausted); -1 for none.
    pub next_producer_id: i64,
    /// The transaction version of the client's open or last transaction: 2
    /// bumps the epoch at every commit or abort.
    pub client_version: i16,
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

/// Transaction version 1: the epoch moves only at InitProducerId and fencing.
pub const TV_KEEP_EPOCH: i16 = 1;
/// Transaction version 2: the epoch is bumped at every commit or abort.
pub const TV_EPOCH_BUMP: i16 = 2;

/// What an EndTxn leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum EndPlan {
    /// Store this Prepare state, answer with `answer()`, write the markers.
    Prepare(TxnMetadata),
    /// The epoch is exhausted: allocate a new id, then `prepare_with_next_id`.
    Rotate,
    /// It ended this way already (a retry): answer success with this id and epoch.
    Ended(i64, i16),
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
            next_producer_id: -1,
            client_version: 0,
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
            TxnStatus::Ongoing => Ok(InitPlan::FenceAndAbort(self.fenced_abort(now_ms))),
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

    /// AddPartitionsToTxn (and AddOffsetsToTxn), or a partition leader's
    /// implicit add (version 2): `None` when every partition is in the
    /// transaction already (nothing to store). `client_version` is the
    /// transaction version the client uses.
    pub fn plan_add(
        &self,
        producer: (i64, i16),
        partitions: &[TopicPartition],
        client_version: i16,
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
            next.client_version = client_version;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.status = TxnStatus::Ongoing;
        next.last_update_ms = now_ms;
        Ok(Some(next))
    }

    /// EndTxn from the client, at transaction version `client_version`.
    pub fn plan_end(
        &self,
        producer: (i64, i16),
        commit: bool,
        client_version: i16,
        now_ms: i64,
    ) -> Result<EndPlan, ErrorCode> {
        match client_version >= TV_EPOCH_BUMP {
            true => self.plan_end_bumping(producer, commit, now_ms),
            false => self.plan_end_keeping(producer, commit, now_ms),
        }
    }

    /// Version 1: the epoch stays; a retry comes with the same one.
    fn plan_end_keeping(&self, producer: (i64, i16), commit: bool, now_ms: i64) -> Result<EndPlan, ErrorCode> {
        if self.producer_id != producer.0 {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        self.check_not_ending()?;
        self.check_producer(producer.0, producer.1)?;
        match (self.status, commit) {
            (TxnStatus::Ongoing, _) => Ok(EndPlan::Prepare(self.prepare_end(commit, TV_KEEP_EPOCH, -1, now_ms))),
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => {
                Ok(EndPlan::Ended(self.producer_id, self.producer_epoch))
            }
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// CONCURRENT_TRANSACTIONS while the last transaction's markers are
    /// being written, before the epoch is checked (Kafka since KAFKA-18464):
    /// at version 2 the client's next EndTxn comes at the bumped epoch the
    /// moment the last one was answered (an abort of nothing, typically),
    /// and is retried once the markers are in, rather than fenced.
    fn check_not_ending(&self) -> Result<(), ErrorCode> {
        match self.status.is_prepare() {
            true => Err(ErrorCode::ConcurrentTransactions),
            false => Ok(()),
        }
    }

    /// Version 2 bumps the epoch at every end, so a retry comes with the
    /// epoch before the bump (or the last of the id before a rotation), and
    /// the current epoch is the next transaction's. Kafka checks the epoch
    /// per state as below, answers PRODUCER_FENCED for any other, and lets an
    /// abort with no transaction open bump the epoch too.
    fn plan_end_bumping(&self, producer: (i64, i16), commit: bool, now_ms: i64) -> Result<EndPlan, ErrorCode> {
        let (producer_id, epoch) = producer;
        let retry_of_bump = i32::from(self.producer_epoch) == i32::from(epoch) + 1;
        let retry_of_rotation =
            self.previous_producer_id == producer_id && epoch == EPOCH_MAX && self.producer_epoch == 0;
        let retry = retry_of_bump || retry_of_rotation;
        let epoch_valid = match self.status {
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => retry || epoch == self.producer_epoch,
            _ => epoch == self.producer_epoch,
        };
        if self.producer_id != producer_id && !retry_of_rotation {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        self.check_not_ending()?;
        if !epoch_valid {
            return Err(ErrorCode::ProducerFenced);
        }
        let ended = Ok(EndPlan::Ended(self.producer_id, self.producer_epoch));
        match (self.status, commit) {
            (TxnStatus::Ongoing, _) => Ok(self.plan_prepare(commit, now_ms)),
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) if retry => ended,
            (TxnStatus::CompleteCommit, false) | (TxnStatus::CompleteAbort, false) | (TxnStatus::Empty, false)
                if !retry =>
            {
                Ok(self.plan_prepare(false, now_ms)) // nothing open: an abort of nothing
            }
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// The version 2 Prepare state, or a rotation first if the bump would
    /// exhaust the epoch.
    fn plan_prepare(&self, commit: bool, now_ms: i64) -> EndPlan {
        match self.producer_epoch >= EPOCH_MAX {
            true => EndPlan::Rotate,
            false => EndPlan::Prepare(self.prepare_end(commit, TV_EPOCH_BUMP, -1, now_ms)),
        }
    }

    /// EndTxn at version 2 with the epoch exhausted: the Prepare state, which
    /// completes onto `next_producer_id` at epoch 0.
    pub fn prepare_with_next_id(&self, commit: bool, next_producer_id: i64, now_ms: i64) -> TxnMetadata {
        assert!(!self.status.is_prepare(), "a prepared transaction is ending already");
        self.prepare_end(commit, TV_EPOCH_BUMP, next_producer_id, now_ms)
    }

    fn prepare_end(&self, commit: bool, client_version: i16, next_producer_id: i64, now_ms: i64) -> TxnMetadata {
        let mut next = self.prepare(commit, now_ms);
        next.client_version = client_version;
        if client_version >= TV_EPOCH_BUMP {
            next.last_producer_epoch = self.producer_epoch;
            next.producer_epoch = self.producer_epoch.saturating_add(1);
            next.next_producer_id = next_producer_id;
        }
        next
    }

    /// The id and epoch an EndTxn answers for this Prepare state: those the
    /// producer uses next (version 2 moves them; version 1 leaves them).
    pub fn answer(&self) -> (i64, i16) {
        assert!(self.status.is_prepare(), "EndTxn answers with a prepared state");
        match self.next_producer_id {
            -1 => (self.producer_id, self.producer_epoch),
            next => (next, 0),
        }
    }

    /// The coordinator aborts an open transaction that outlived its timeout
    /// (the coordinator keeps the deadline, on the monotonic clock), fencing
    /// the producer.
    pub fn plan_timeout_abort(&self, now_ms: i64) -> Option<TxnMetadata> {
        (self.status == TxnStatus::Ongoing).then(|| self.fenced_abort(now_ms))
    }

    /// PrepareAbort of the open transaction with the epoch bumped, so its
    /// producer is fenced, as Kafka's PrepareEpochFence: at version 2 the
    /// abort bumps it once more, so the fenced producer's EndTxn does not
    /// pass for a retry of a bump it never made.
    fn fenced_abort(&self, now_ms: i64) -> TxnMetadata {
        let mut fenced = self.clone();
        fenced.producer_epoch = self.producer_epoch.saturating_add(1);
        let mut next = fenced.prepare_end(false, self.client_version, -1, now_ms);
        next.last_producer_epoch = -1;
        next
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
        if self.next_producer_id >= 0 {
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.last_producer_epoch = -1;
            next.next_producer_id = -1;
        }
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
        let ongoing = empty.plan_add((1000, 0), &[tp(0), tp(1)], 1, 2).unwrap().unwrap();
        assert_eq!((ongoing.status, ongoing.start_ms), (TxnStatus::Ongoing, 2));
        assert_eq!(ongoing.plan_add((1000, 0), &[tp(1)], 1, 3), Ok(None), "already in");
        let Ok(EndPlan::Prepare(prepared)) = ongoing.plan_end((1000, 0), true, 1, 4) else {
            panic!("an open transaction prepares");
        };
        assert_eq!(prepared.answer(), (1000, 0), "version 1 keeps the epoch");
        assert_eq!(prepared.status, TxnStatus::PrepareCommit);
        assert_eq!(
            prepared.plan_end((1000, 0), true, 1, 5),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.plan_end((1000, 0), false, 1, 5),
            Err(ErrorCode::ConcurrentTransactions),
            "whatever comes while the markers are written waits for them"
        );
        assert_eq!(
            prepared.plan_add((1000, 0), &[tp(2)], 1, 5),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let complete = prepared.complete(6);
        assert_eq!(complete.status, TxnStatus::CompleteCommit);
        assert!(complete.partitions.is_empty());
        assert_eq!(
            complete.plan_end((1000, 0), true, 1, 7),
            Ok(EndPlan::Ended(1000, 0)),
            "a retried commit succeeds"
        );
        assert_eq!(
            complete.plan_end((1000, 0), false, 1, 7),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(empty.plan_end((1000, 0), true, 1, 7), Err(ErrorCode::InvalidTxnState));
    }

    #[test]
    fn a_second_producer_fences_the_first_and_aborts_its_open_transaction() {
        let empty = stored(TxnMetadata::new("tx".into(), 1000, 60_000, 0).plan_init(60_000, None, 1));
        let ongoing = empty.plan_add((1000, 0), &[tp(0)], 1, 2).unwrap().unwrap();
        let Ok(InitPlan::FenceAndAbort(fenced)) = ongoing.plan_init(60_000, None, 3) else {
            panic!("an open transaction is aborted first");
        };
        assert_eq!((fenced.producer_epoch, fenced.status), (1, TxnStatus::PrepareAbort));
        assert_eq!(
            fenced.plan_add((1000, 0), &[tp(1)], 1, 4),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            fenced.plan_end((1000, 0), true, 1, 4),
            Err(ErrorCode::ConcurrentTransactions),
            "the fencing abort's markers first"
        );
        assert_eq!(
            fenced.plan_end((999, 1), true, 1, 4),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let aborted = fenced.complete(5);
        assert_eq!(aborted.plan_end((1000, 0), true, 1, 5), Err(ErrorCode::ProducerFenced));
        let reinit = stored(aborted.plan_init(60_000, None, 6));
        assert_eq!((reinit.producer_epoch, reinit.status), (2, TxnStatus::Empty));
    }

    #[test]
    fn timeouts_abort_with_a_bump_and_exhausted_epochs_rotate_the_id() {
        let empty = stored(TxnMetadata::new("tx".into(), 1000, 100, 0).plan_init(100, None, 0));
        let ongoing = empty.plan_add((1000, 0), &[tp(0)], 1, 10).unwrap().unwrap();
        assert_eq!(empty.plan_timeout_abort(111), None, "nothing open");
        let aborted = ongoing.plan_timeout_abort(111).unwrap();
        assert_eq!((aborted.status, aborted.producer_epoch), (TxnStatus::PrepareAbort, 1));
        let mut bumping = ongoing.clone();
        bumping.client_version = TV_EPOCH_BUMP;
        let aborted = bumping.plan_timeout_abort(111).unwrap();
        assert_eq!(aborted.producer_epoch, 2, "version 2 bumps past a retry's epoch");
        let complete = aborted.complete(112);
        assert_eq!(
            complete.plan_end((1000, 0), false, TV_EPOCH_BUMP, 113),
            Err(ErrorCode::ProducerFenced),
            "the fenced producer's abort is no retry"
        );
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

    #[test]
    fn version_2_bumps_the_epoch_at_every_end_and_knows_its_retries() {
        let empty = stored(TxnMetadata::new("tx".into(), 1000, 60_000, 0).plan_init(60_000, None, 1));
        let ongoing = empty.plan_add((1000, 0), &[tp(0)], TV_EPOCH_BUMP, 2).unwrap().unwrap();
        assert_eq!(ongoing.client_version, TV_EPOCH_BUMP);
        let Ok(EndPlan::Prepare(prepared)) = ongoing.plan_end((1000, 0), true, TV_EPOCH_BUMP, 3) else {
            panic!("an open transaction prepares");
        };
        assert_eq!((prepared.producer_epoch, prepared.last_producer_epoch), (1, 0));
        assert_eq!(prepared.answer(), (1000, 1), "the client moves to the bumped epoch");
        let retry = prepared.plan_end((1000, 0), true, TV_EPOCH_BUMP, 4);
        assert_eq!(
            retry,
            Err(ErrorCode::ConcurrentTransactions),
            "markers still being written"
        );
        assert_eq!(
            prepared.plan_end((1000, 1), false, TV_EPOCH_BUMP, 4),
            Err(ErrorCode::ConcurrentTransactions),
            "the next EndTxn, an abort of nothing at the new epoch, waits for the markers"
        );
        assert_eq!(
            prepared.plan_end((1000, 2), false, TV_EPOCH_BUMP, 4),
            Err(ErrorCode::ConcurrentTransactions)
        );
        // The next transaction may begin at the new epoch before the markers are done.
        assert_eq!(
            prepared.plan_add((1000, 1), &[tp(0)], TV_EPOCH_BUMP, 4),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let complete = prepared.complete(5);
        assert_eq!(
            complete.plan_end((1000, 0), true, TV_EPOCH_BUMP, 6),
            Ok(EndPlan::Ended(1000, 1)),
            "a retry after completion gets the bumped epoch"
        );
        assert_eq!(
            complete.plan_end((1000, 0), false, TV_EPOCH_BUMP, 6),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(
            complete.plan_end((1000, 1), true, TV_EPOCH_BUMP, 6),
            Err(ErrorCode::InvalidTxnState),
            "nothing open to commit at the new epoch"
        );
        let Ok(EndPlan::Prepare(empty_abort)) = complete.plan_end((1000, 1), false, TV_EPOCH_BUMP, 6) else {
            panic!("an abort with nothing open still bumps the epoch");
        };
        assert_eq!((empty_abort.answer(), empty_abort.partitions.len()), ((1000, 2), 0));
        assert_eq!(
            complete.plan_end((1000, 3), true, TV_EPOCH_BUMP, 6),
            Err(ErrorCode::ProducerFenced)
        );
        let next = complete
            .plan_add((1000, 1), &[tp(1)], TV_EPOCH_BUMP, 7)
            .unwrap()
            .unwrap();
        assert_eq!((next.status, next.producer_epoch), (TxnStatus::Ongoing, 1));
        assert_eq!(
            complete.plan_add((1000, 0), &[tp(1)], TV_EPOCH_BUMP, 7),
            Err(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn version_2_moves_an_exhausted_producer_to_a_new_id_when_the_markers_are_written() {
        let mut worn = stored(TxnMetadata::new("tx".into(), 1000, 60_000, 0).plan_init(60_000, None, 1));
        worn.producer_epoch = EPOCH_MAX;
        let ongoing = worn
            .plan_add((1000, EPOCH_MAX), &[tp(0)], TV_EPOCH_BUMP, 2)
            .unwrap()
            .unwrap();
        assert_eq!(
            ongoing.plan_end((1000, EPOCH_MAX), true, TV_EPOCH_BUMP, 3),
            Ok(EndPlan::Rotate)
        );
        let prepared = ongoing.prepare_with_next_id(true, 2000, 3);
        assert_eq!(prepared.producer_epoch, EPOCH_MAX + 1, "the markers fence the old id");
        assert_eq!(prepared.answer(), (2000, 0));
        let complete = prepared.complete(4);
        assert_eq!(
            (
                complete.producer_id,
                complete.producer_epoch,
                complete.previous_producer_id
            ),
            (2000, 0, 1000)
        );
        assert_eq!(
            complete.plan_end((1000, EPOCH_MAX), true, TV_EPOCH_BUMP, 5),
            Ok(EndPlan::Ended(2000, 0)),
            "a retry of the rotating commit"
        );
        assert!(complete.plan_add((2000, 0), &[tp(0)], TV_EPOCH_BUMP, 6).is_ok());
    }
}
