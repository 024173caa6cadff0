//! Plain data shared by every layer: partition names, error codes, clocks.

use std::fmt;

/// A topic name and partition index, the unit of ownership in Sluice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition's directory name, as Kafka lays it out: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name back; topic names may themselves contain '-'.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if topic.is_empty() || partition < 0 {
            return None;
        }
        Some(Self::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Kafka error codes used by the broker (see the protocol guide's error table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum ErrorCode {
    None = 0,
    UnknownServerError = -1,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    LeaderNotAvailable = 5,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    NotEnoughReplicas = 19,
    NotEnoughReplicasAfterAppend = 20,
    MessageTooLarge = 10,
    CoordinatorNotAvailable = 15,
    InvalidTopicException = 17,
    RecordListTooLarge = 18,
    InvalidRequiredAcks = 21,
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    NotController = 41,
    InvalidRequest = 42,
    UnsupportedForMessageFormat = 43,
    OutOfOrderSequenceNumber = 45,
    DuplicateSequenceNumber = 46,
    InvalidProducerEpoch = 47,
    InvalidTxnState = 48,
    InvalidProducerIdMapping = 49,
    InvalidTransactionTimeout = 50,
    ConcurrentTransactions = 51,
    TransactionCoordinatorFenced = 52,
    TransactionalIdAuthorizationFailed = 53,
    ProducerFenced = 90,
    UnsupportedCompressionType = 76,
    KafkaStorageError = 56,
    OperationNotAttempted = 55,
    FetchSessionIdNotFound = 70,
    FencedLeaderEpoch = 74,
    UnknownLeaderEpoch = 75,
    InvalidFetchSessionEpoch = 71,
    FetchSessionTopicIdError = 106,
    UnknownProducerId = 59,
    InvalidTimestamp = 32,
    InvalidRecord = 87,
    UnknownTopicId = 100,
    BrokerIdNotRegistered = 102,
    InconsistentTopicId = 103,
    TransactionalIdNotFound = 105,
    InvalidRegularExpression = 128,
    TransactionAbortable = 120,
    OffsetMetadataTooLarge = 12,
    CoordinatorLoadInProgress = 14,
    NotCoordinator = 16,
    IllegalGeneration = 22,
    InconsistentGroupProtocol = 23,
    InvalidGroupId = 24,
    UnknownMemberId = 25,
    InvalidSessionTimeout = 26,
    RebalanceInProgress = 27,
    NonEmptyGroup = 68,
    GroupIdNotFound = 69,
    MemberIdRequired = 79,
    GroupMaxSizeReached = 81,
    FencedInstanceId = 82,
    GroupSubscribedToTopic = 86,
    UnstableOffsetCommit = 88,
    PreferredLeaderNotAvailable = 80,
    EligibleLeadersNotAvailable = 83,
    ElectionNotNeeded = 84,
    NoReassignmentInProgress = 85,
    FencedMemberEpoch = 110,
    UnreleasedInstanceId = 111,
    UnsupportedAssignor = 112,
    StaleMemberEpoch = 113,
    InvalidUpdateVersion = 95,
}

impl ErrorCode {
    /// Every code the broker knows, for `from_code`.
    const ALL: [ErrorCode; 76] = [
        ErrorCode::None,
        ErrorCode::UnknownServerError,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::RequestTimedOut,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend,
        ErrorCode::MessageTooLarge,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::InvalidTopicException,
        ErrorCode::RecordListTooLarge,
        ErrorCode::InvalidRequiredAcks,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::InvalidConfig,
        ErrorCode::NotController,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedForMessageFormat,
        ErrorCode::OutOfOrderSequenceNumber,
        ErrorCode::DuplicateSequenceNumber,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::InvalidTxnState,
        ErrorCode::InvalidProducerIdMapping,
        ErrorCode::InvalidTransactionTimeout,
        ErrorCode::ConcurrentTransactions,
        ErrorCode::TransactionCoordinatorFenced,
        ErrorCode::TransactionalIdAuthorizationFailed,
        ErrorCode::ProducerFenced,
        ErrorCode::UnsupportedCompressionType,
        ErrorCode::KafkaStorageError,
        ErrorCode::OperationNotAttempted,
        ErrorCode::FetchSessionIdNotFound,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::InvalidFetchSessionEpoch,
        ErrorCode::FetchSessionTopicIdError,
        ErrorCode::UnknownProducerId,
        ErrorCode::InvalidTimestamp,
        ErrorCode::InvalidRecord,
        ErrorCode::UnknownTopicId,
        ErrorCode::BrokerIdNotRegistered,
        ErrorCode::InconsistentTopicId,
        ErrorCode::TransactionalIdNotFound,
        ErrorCode::InvalidRegularExpression,
        ErrorCode::TransactionAbortable,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::NotCoordinator,
        ErrorCode::IllegalGeneration,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidGroupId,
        ErrorCode::UnknownMemberId,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::RebalanceInProgress,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::MemberIdRequired,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::FencedInstanceId,
        ErrorCode::GroupSubscribedToTopic,
        ErrorCode::UnstableOffsetCommit,
        ErrorCode::PreferredLeaderNotAvailable,
        ErrorCode::EligibleLeadersNotAvailable,
        ErrorCode::ElectionNotNeeded,
        ErrorCode::NoReassignmentInProgress,
        ErrorCode::FencedMemberEpoch,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::UnsupportedAssignor,
        ErrorCode::StaleMemberEpoch,
        ErrorCode::InvalidUpdateVersion,
    ];

    pub fn code(self) -> i16 {
        self as i16
    }

    /// The code another broker answered, if this broker knows it.
    pub fn from_code(code: i16) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// Added to the system clock by `now_ms`: zero unless a fault campaign's
/// clock-jump hook set it (`set_wall_clock_skew_ms`).
static WALL_CLOCK_SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn system_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch, as Kafka timestamps are. It
/// jumps when the system clock is set: for timestamps and retention, never
/// for a timeout (`steady_ms`).
pub fn now_ms() -> i64 {
    system_clock_ms() + WALL_CLOCK_SKEW_MS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Moves `now_ms` by `skew_ms` from the system clock, as if the clock had
/// been set: the hook with which fault campaigns make the wall clock jump.
pub fn set_wall_clock_skew_ms(skew_ms: i64) {
    WALL_CLOCK_SKEW_MS.store(skew_ms, std::sync::atomic::Ordering::Relaxed);
}

/// Milliseconds that never jump: the wall clock when first read, plus the
/// monotonic time since. For deadlines and timeouts (group sessions and
/// rebalances, ISR lag, fetch sessions), which setting the clock must not
/// fire early or hold off; close to `now_ms` while nobody sets the clock.
pub fn steady_ms() -> i64 {
    static ORIGIN: std::sync::OnceLock<(std::time::Instant, i64)> = std::sync::OnceLock::new();
    let (instant, wall_ms) = ORIGIN.get_or_init(|| (std::time::Instant::now(), system_clock_ms()));
    wall_ms + instant.elapsed().as_millis() as i64
}

/// The longest name the broker keeps: what an int16-length string of Kafka's
/// formats holds (`__consumer_offsets` keys and values use them). Group ids,
/// member and instance ids, protocol names, client ids and hosts over it are
/// refused where they enter; flexible requests' compact strings carry no
/// such bound of their own.
pub const NAME_BYTES_MAX: usize = i16::MAX as usize;

/// Whether every name fits `NAME_BYTES_MAX`.
pub fn names_fit<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    names.into_iter().all(|n| n.len() <= NAME_BYTES_MAX)
}

/// The broker's own topics: created by the broker, never by users, and
/// neither produced to nor deleted through the API.
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Checks a topic name the way Kafka does: 1..=249 chars of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > 249 {
        return Err("topic name is longer than 249 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

/// Kafka's bound on partitions per topic in one request is the int32 range; ours is practical.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

#[cfg(test)]
mod tests {

    #[test]
    fn every_error_code_reads_back_and_none_is_listed_twice() {
        for e in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(e.code()), Some(e));
        }
        let mut codes: Vec<i16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_code(12345), None);
    }
    use super::*;

    #[test]
    fn dir_names_round_trip_with_dashes_in_topic() {
        let tp = TopicPartition::new("my-topic-x", 12);
        assert_eq!(tp.dir_name(), "my-topic-x-12");
        assert_eq!(TopicPartition::from_dir_name("my-topic-x-12"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("t-x"), None);
        assert_eq!(
            TopicPartition::from_dir_name("t--1"),
            Some(TopicPartition::new("t-", 1))
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
