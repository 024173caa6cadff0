//! The controller: the one place metadata changes. It runs on shard 0. A
//! topic change is written one way in both modes: as quorum records
//! (`Record`), which cluster mode proposes to the metadata quorum and a
//! single node applies at once through the same `ClusterImage` code the
//! quorum replays. The new snapshot is stored durably, handed to every shard,
//! and the controller waits until all have applied it, so an acknowledged
//! CreateTopics is usable at once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tracing::{info, warn};
use uuid::Uuid;

use super::metadata::{BrokerEndpoint, Features, Metadata, PartitionAssignment, TopicMeta};
use super::quorum::{ClusterImage, Record};
use super::shard::local;
use crate::config::BrokerConfig;
use crate::model::{ErrorCode, is_internal_topic, validate_topic_name};
use crate::runtime::{self, submit_to};
use crate::storage::LogConfig;
use crate::storage::log_config::{broker_config_key, topic_config_key};

/// The controller's shard.
pub const CONTROLLER_SHARD: usize = 0;
/// Producer ids are reserved on disk in blocks, so none is reused after a restart.
const PRODUCER_ID_BLOCK: i64 = 1000;
pub use crate::model::PARTITIONS_PER_TOPIC_MAX;

/// An error for one resource of an admin request, with Kafka's code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

/// What a controller operation writes.
enum Change {
    /// Nothing (a validate-only request, a producer id from the reserved block).
    None,
    /// Topic records: proposed to the quorum, or applied here on a single node.
    Records(Vec<Record>),
    /// The next snapshot, differing only in node-local fields (dynamic broker
    /// configs, the producer-id reservation), which no quorum replicates.
    Local(Metadata),
}

impl Change {
    /// Replaces `old` with `new`, only if `old` is still that topic when the record applies.
    fn replace_topic(old: &TopicMeta, new: TopicMeta) -> Self {
        Change::Records(vec![Record::PutTopic {
            expect_id: Some(old.id),
            topic: new,
        }])
    }
}

pub struct Controller {
    data_dir: PathBuf,
    static_defaults: LogConfig,
    /// `transaction.version` as this broker's setting gives it (`Metadata::feature_level`).
    txn_version_setting: i16,
    default_partitions: i32,
    default_replication_factor: i16,
    next_producer_id: Cell<i64>,
    /// The latest snapshot, ahead of the shards' copies while a broadcast is under way.
    current: RefCell<Arc<Metadata>>,
    /// Cluster mode: topic records go to the metadata quorum, and come back
    /// as views (`apply_cluster_view`); otherwise they are applied here.
    cluster_mode: bool,
    /// Cluster mode: the quorum log index of the last view folded in, and a
    /// notification for changes waiting to see their own record applied.
    view_index: Cell<u64>,
    view_changed: event_listener::Event,
}

/// How long a cluster-mode change waits to come back from the quorum.
const VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl Controller {
    pub fn new(config: &BrokerConfig, metadata: &Arc<Metadata>) -> Self {
        Self {
            data_dir: config.data_dir.clone(),
            static_defaults: config.log_defaults.clone(),
            txn_version_setting: config.txn.version,
            default_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
            next_producer_id: Cell::new(first_producer_id(config, metadata)),
            current: RefCell::new(Arc::clone(metadata)),
            cluster_mode: !config.controller_voters.is_empty(),
            view_index: Cell::new(0),
            view_changed: event_listener::Event::new(),
        }
    }

    /// Stores `next` (a change to node-local fields, or a view of topic
    /// records applied) as the metadata the shards serve next.
    fn commit_local(&self, mut next: Metadata) -> Result<Arc<Metadata>, ApiError> {
        next.version = self.current.borrow().version + 1;
        next.store(&self.data_dir)
            .map_err(|e| ApiError::new(ErrorCode::KafkaStorageError, format!("storing metadata failed: {e}")))?;
        let next = Arc::new(next);
        *self.current.borrow_mut() = Arc::clone(&next);
        Ok(next)
    }

    /// The brokers new replicas may go to: the registered, unfenced ones in
    /// cluster mode, this broker alone otherwise.
    fn placeable_brokers(&self, current: &Metadata) -> Vec<i32> {
        if self.cluster_mode {
            current
                .brokers
                .iter()
                .filter(|(_, b)| !b.fenced)
                .map(|(id, _)| *id)
                .collect()
        } else {
            vec![current.broker_id]
        }
    }

    /// Writes topic records. Cluster mode proposes them to the quorum and
    /// waits until they are back in this node's metadata; a single node
    /// applies them here through the same `ClusterImage::apply`, so both
    /// modes decide a record's outcome with one piece of code.
    async fn write_records(&self, records: Vec<Record>) -> Result<(), ApiError> {
        if self.cluster_mode {
            let Some(quorum) = crate::cluster::quorum::get() else {
                return Err(ApiError::new(
                    ErrorCode::NotController,
                    "the metadata quorum is not running",
                ));
            };
            let mut index = 0;
            for record in records {
                index = quorum
                    .propose(record)
                    .await
                    .map_err(|e| ApiError::new(e.code, e.message))?;
            }
            return self.wait_for_view(index).await;
        }
        let current = Arc::clone(&self.current.borrow());
        let mut image = ClusterImage {
            topics: current.topics.clone(),
            features: current.features.clone(),
            ..ClusterImage::default()
        };
        for record in records {
            image.apply(record).map_err(|e| ApiError::new(e.code, e.message))?;
        }
        let mut next = (*current).clone();
        next.topics = image.topics;
        next.features = image.features;
        broadcast(self.commit_local(next)?).await;
        Ok(())
    }

    /// Resolves once the view folded into this node's metadata includes log index `index`.
    async fn wait_for_view(&self, index: u64) -> Result<(), ApiError> {
        let deadline = std::time::Instant::now() + VIEW_TIMEOUT;
        // Bounded by VIEW_TIMEOUT: each round waits for a notification or the deadline.
        while self.view_index.get() < index {
            let listener = self.view_changed.listen();
            if self.view_index.get() >= index {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    ErrorCode::RequestTimedOut,
                    "the change was committed but not yet applied here",
                ));
            }
            let timeout = compio::time::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
            futures_util::future::select(listener, std::pin::pin!(timeout)).await;
        }
        Ok(())
    }

    fn validate_topic_configs(&self, current: &Metadata, configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
        let defaults = current.broker_log_defaults(&self.static_defaults);
        for name in configs.keys() {
            if topic_config_key(name).is_none() {
                return Err(ApiError::new(
                    ErrorCode::InvalidConfig,
                    format!("unknown topic config '{name}'"),
                ));
            }
        }
        defaults
            .with_overrides(configs)
            .map(|_| ())
            .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e))
    }

    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(Change, Arc<TopicMeta>), ApiError> {
        validate_topic_name(name).map_err(|e| ApiError::new(ErrorCode::InvalidTopicException, e))?;
        if is_internal_topic(name) {
            return Err(ApiError::new(
                ErrorCode::InvalidTopicException,
                format!("'{name}' is an internal topic; the broker creates it"),
            ));
        }
        self.create_topic_unchecked(name, partitions, replication_factor, configs, validate_only)
    }

    fn create_topic_unchecked(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(Change, Arc<TopicMeta>), ApiError> {
        let current = Arc::clone(&self.current.borrow());
        if current.topics.contains_key(name) {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        let partitions = if partitions == -1 {
            self.default_partitions
        } else {
            partitions
        };
        if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!("number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let replication_factor = if replication_factor == -1 {
            self.default_replication_factor
        } else {
            replication_factor
        };
        let brokers = self.placeable_brokers(&current);
        if replication_factor < 1 || replication_factor as usize > brokers.len() {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is larger than the {} available broker{}",
                    brokers.len(),
                    if brokers.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        self.validate_topic_configs(&current, &configs)?;
        let assignment = if self.cluster_mode {
            place(&brokers, 0..partitions, replication_factor as usize, rand_start())
        } else {
            Vec::new()
        };
        let topic = Arc::new(TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
            assignment,
        });
        if validate_only {
            return Ok((Change::None, topic));
        }
        info!(topic = name, partitions, "creating topic");
        let create = Record::PutTopic {
            topic: (*topic).clone(),
            expect_id: None,
        };
        Ok((Change::Records(vec![create]), topic))
    }

    fn delete_topic(&self, name: &str) -> Result<Change, ApiError> {
        if is_internal_topic(name) {
            return Err(ApiError::new(
                ErrorCode::InvalidTopicException,
                format!("'{name}' is an internal topic and cannot be deleted"),
            ));
        }
        let current = Arc::clone(&self.current.borrow());
        let id = existing_topic(&current, name)?.id;
        info!(topic = name, "deleting topic");
        Ok(Change::Records(vec![Record::DeleteTopic {
            name: name.to_string(),
            id,
        }]))
    }

    fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<Change, ApiError> {
        let current = Arc::clone(&self.current.borrow());
        let topic = existing_topic(&current, name)?;
        if count <= topic.partitions {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "topic '{name}' has {} partitions; the new count {count} must be larger",
                    topic.partitions
                ),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(ApiError::new(ErrorCode::InvalidPartitions, "too many partitions"));
        }
        if validate_only {
            return Ok(Change::None);
        }
        let mut grown = (**topic).clone();
        if self.cluster_mode {
            let replication_factor = topic.assignment.first().map_or(1, |a| a.replicas.len());
            let brokers = self.placeable_brokers(&current);
            if replication_factor > brokers.len() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "the topic's {replication_factor} replicas need more than the {} brokers",
                        brokers.len()
                    ),
                ));
            }
            let added = place(&brokers, topic.partitions..count, replication_factor, rand_start());
            grown.assignment.extend(added);
        }
        grown.partitions = count;
        Ok(Change::replace_topic(topic, grown))
    }

    fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[(String, ConfigOp, Option<String>)],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<Change, ApiError> {
        let current = Arc::clone(&self.current.borrow());
        let topic = existing_topic(&current, name)?;
        let mut configs = if replace_all {
            BTreeMap::new()
        } else {
            topic.configs.clone()
        };
        apply_config_ops(&mut configs, ops)?;
        self.validate_topic_configs(&current, &configs)?;
        if validate_only {
            return Ok(Change::None);
        }
        let mut altered = (**topic).clone();
        altered.configs = configs;
        Ok(Change::replace_topic(topic, altered))
    }

    fn alter_broker_configs(
        &self,
        ops: &[(String, ConfigOp, Option<String>)],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<Change, ApiError> {
        let current = Arc::clone(&self.current.borrow());
        let mut configs = if replace_all {
            BTreeMap::new()
        } else {
            current.broker_configs.clone()
        };
        apply_config_ops(&mut configs, ops)?;
        let mut check = self.static_defaults.clone();
        for (key, value) in &configs {
            let topic_key = broker_config_key(key).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidConfig,
                    format!("broker config '{key}' cannot be changed at runtime"),
                )
            })?;
            check
                .set(topic_key.name, value)
                .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e))?;
        }
        if validate_only {
            return Ok(Change::None);
        }
        let mut next = (*current).clone();
        next.broker_configs = configs;
        Ok(Change::Local(next))
    }

    fn update_features(&self, updates: &[FeatureUpdate], validate_only: bool) -> Result<Change, ApiError> {
        let current = Arc::clone(&self.current.borrow());
        let epoch_ms = crate::model::now_ms().max(current.features.epoch_ms + 1);
        let mut records = Vec::with_capacity(updates.len());
        for (i, update) in updates.iter().enumerate() {
            if updates[..i].iter().any(|u| u.feature == update.feature) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("Feature {} was specified more than once.", update.feature),
                ));
            }
            let (min, max) = crate::config::supported_feature(&update.feature).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidUpdateVersion,
                    format!(
                        "Invalid update version {} for feature {}. This cluster does not support this feature.",
                        update.level, update.feature
                    ),
                )
            })?;
            let finalized = current.feature_level(&update.feature, self.txn_version_setting);
            check_feature_update(update, min, max, finalized)?;
            records.push(Record::SetFeatureLevel {
                feature: update.feature.clone(),
                level: update.level,
                epoch_ms,
            });
        }
        if validate_only || records.is_empty() {
            return Ok(Change::None);
        }
        Ok(Change::Records(records))
    }

    fn allocate_producer_id(&self) -> (Change, i64) {
        let id = self.next_producer_id.get();
        self.next_producer_id.set(id + 1);
        let current = Arc::clone(&self.current.borrow());
        if id < current.producer_id_block_end {
            return (Change::None, id);
        }
        let mut next = (*current).clone();
        next.producer_id_block_end = id + PRODUCER_ID_BLOCK;
        (Change::Local(next), id)
    }
}

/// One update of UpdateFeatures: `feature` to `level`, as `kind` allows.
#[derive(Debug, Clone)]
pub struct FeatureUpdate {
    pub feature: String,
    pub level: i16,
    pub kind: UpgradeKind,
}

/// UpdateFeatures' upgrade type (v0's allow_downgrade is a safe downgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeKind {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
}

/// Whether `update` may move a feature at `finalized` within the supported
/// `min..=max` (messages as Kafka's controller words them).
fn check_feature_update(update: &FeatureUpdate, min: i16, max: i16, finalized: i16) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::new(
            ErrorCode::InvalidUpdateVersion,
            format!(
                "Invalid update version {} for feature {}. {why}",
                update.level, update.feature
            ),
        ))
    };
    if !(min..=max).contains(&update.level) {
        return refuse(format!("This cluster only supports versions {min}-{max}"));
    }
    match update.kind {
        UpgradeKind::Upgrade if update.level < finalized => refuse(format!(
            "It is at {finalized}: a downgrade needs the upgrade type SAFE_DOWNGRADE or UNSAFE_DOWNGRADE."
        )),
        UpgradeKind::SafeDowngrade | UpgradeKind::UnsafeDowngrade if update.level > finalized => {
            refuse("Can't downgrade to a newer version.".to_string())
        }
        _ => Ok(()),
    }
}

/// Producer ids are unique per cluster: in cluster mode each node hands out
/// ids from its own range, `node id << 40` on (Kafka's controller hands out
/// blocks instead; a partitioned range needs no round trip).
fn first_producer_id(config: &BrokerConfig, metadata: &Metadata) -> i64 {
    const NODE_RANGE_BITS: u32 = 40;
    let floor = if config.controller_voters.is_empty() {
        0
    } else {
        i64::from(config.broker_id.max(0)) << NODE_RANGE_BITS
    };
    metadata.producer_id_block_end.max(floor)
}

/// Kafka's round-robin placement (the seeds' scheme): replica `i` of
/// partition `p` goes to broker `(start + p + i) % n`, so leaders (the first
/// replica) are spread evenly and no broker holds two replicas of a partition.
/// The ISR starts as the leader alone: replicas join it once they have caught up.
fn place(
    brokers: &[i32],
    partitions: std::ops::Range<i32>,
    replication_factor: usize,
    start: usize,
) -> Vec<PartitionAssignment> {
    assert!(
        replication_factor >= 1 && replication_factor <= brokers.len(),
        "placement needs enough brokers"
    );
    partitions
        .map(|p| {
            let replicas: Vec<i32> = (0..replication_factor)
                .map(|i| brokers[(start + p as usize + i) % brokers.len()])
                .collect();
            PartitionAssignment {
                isr: vec![replicas[0]],
                leader: replicas[0],
                leader_epoch: 0,
                replicas,
                adding: Vec::new(),
                removing: Vec::new(),
            }
        })
        .collect()
}

/// Where the first partition's leader goes: random, as Kafka does, so many
/// single-partition topics do not all land on the same broker.
fn rand_start() -> usize {
    Uuid::new_v4().as_u128() as usize
}

fn existing_topic<'a>(metadata: &'a Metadata, name: &str) -> Result<&'a Arc<TopicMeta>, ApiError> {
    metadata.topics.get(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })
}

fn apply_config_ops(
    configs: &mut BTreeMap<String, String>,
    ops: &[(String, ConfigOp, Option<String>)],
) -> Result<(), ApiError> {
    for (name, op, value) in ops {
        match op {
            ConfigOp::Set => {
                let value = value
                    .clone()
                    .ok_or_else(|| ApiError::new(ErrorCode::InvalidConfig, format!("no value given for '{name}'")))?;
                configs.insert(name.clone(), value);
            }
            ConfigOp::Delete => {
                configs.remove(name);
            }
            ConfigOp::Append | ConfigOp::Subtract => {
                let mut items: Vec<String> = configs
                    .get(name)
                    .map(|v| {
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                for item in value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if *op == ConfigOp::Append && !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    } else if *op == ConfigOp::Subtract {
                        items.retain(|i| i != item);
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
        }
    }
    Ok(())
}

/// Hands a snapshot to every shard and waits until all have applied it.
/// Cluster mode: what the metadata quorum has applied up to `applied_index`:
/// brokers, topics, and the active controller (-1 while there is no leader).
pub struct ClusterView {
    pub brokers: BTreeMap<i32, BrokerEndpoint>,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    pub features: Features,
    pub controller_id: i32,
    pub applied_index: u64,
}

/// Folds the quorum's view into the metadata every shard serves. Runs on the
/// controller shard; views arrive in log order.
pub async fn apply_cluster_view(view: ClusterView) {
    let shard = local();
    let controller = shard.controller.as_ref().expect("controller lives on shard 0");
    let current = Arc::clone(&controller.current.borrow());
    if view.applied_index < current.quorum_applied_index {
        // A restarted node's image replaying the log: not caught up yet.
        return;
    }
    let unchanged = current.brokers == view.brokers
        && current.topics == view.topics
        && current.features == view.features
        && current.controller_id == Some(view.controller_id);
    if !unchanged {
        let mut next = (*current).clone();
        next.brokers = view.brokers;
        next.topics = view.topics;
        next.features = view.features;
        next.controller_id = Some(view.controller_id);
        next.quorum_applied_index = view.applied_index;
        match controller.commit_local(next) {
            Ok(snapshot) => broadcast(snapshot).await,
            Err(e) => tracing::warn!("cannot apply the cluster view: {}", e.message),
        }
    }
    controller
        .view_index
        .set(controller.view_index.get().max(view.applied_index));
    controller.view_changed.notify(usize::MAX);
}

async fn broadcast(snapshot: Arc<Metadata>) {
    let shards = runtime::shard_count();
    let applied = (0..shards).map(|shard| {
        let snapshot = Arc::clone(&snapshot);
        submit_to(shard, move || async move { local().apply_metadata(snapshot).await })
    });
    futures_util::future::join_all(applied).await;
}

/// Runs `f` on the controller shard and writes the change it decides.
async fn on_controller<R: Send + 'static>(
    f: impl FnOnce(&Controller) -> Result<(Change, R), ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    submit_to(CONTROLLER_SHARD, move || async move {
        let shard = local();
        let controller = shard.controller.as_ref().expect("controller lives on shard 0");
        let (change, result) = f(controller)?;
        match change {
            Change::None => {}
            Change::Records(records) => controller.write_records(records).await?,
            Change::Local(next) => broadcast(controller.commit_local(next)?).await,
        }
        Ok(result)
    })
    .await
    .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::LeaderNotAvailable, "broker is shutting down")))
}

pub async fn create_topic(
    name: String,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Arc<TopicMeta>, ApiError> {
    on_controller(move |c| c.create_topic(&name, partitions, replication_factor, configs, validate_only)).await
}

/// Creates one of the broker's internal topics (no-op error TOPIC_ALREADY_EXISTS if present).
pub async fn create_internal_topic(
    name: String,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
) -> Result<(), ApiError> {
    assert!(is_internal_topic(&name), "{name} is not an internal topic");
    on_controller(move |c| {
        // Replicated like any topic in cluster mode, with the setting's replicas: while
        // fewer brokers are up, the creation fails (the client's FindCoordinator gets
        // COORDINATOR_NOT_AVAILABLE and retries), as Kafka's does, rather than leave the
        // topic with fewer replicas for good. A single node holds the one replica.
        let current = Arc::clone(&c.current.borrow());
        let replication_factor = match c.cluster_mode {
            true => replication_factor.max(1),
            false => 1,
        };
        if c.cluster_mode {
            enough_brokers_up(c.placeable_brokers(&current).len(), &name, replication_factor)?;
        }
        c.create_topic_unchecked(&name, partitions, replication_factor, configs, false)
            .map(|(change, _)| (change, ()))
    })
    .await
}

/// An internal topic gets its whole replication factor or waits: fewer
/// brokers up than that fail its creation, as Kafka's do.
fn enough_brokers_up(alive: usize, name: &str, replication_factor: i16) -> Result<(), ApiError> {
    if alive >= replication_factor as usize {
        return Ok(());
    }
    // Every client's FindCoordinator retries this: said once per WARN_EVERY_MS.
    static WARNED_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    const WARN_EVERY_MS: i64 = 10_000;
    let now_ms = crate::model::steady_ms();
    if now_ms.saturating_sub(WARNED_MS.load(Ordering::Relaxed)) >= WARN_EVERY_MS {
        WARNED_MS.store(now_ms, Ordering::Relaxed);
        warn!(
            topic = %name,
            "{alive} brokers are up, fewer than the topic's replication factor {replication_factor}: \
             it is created once enough are (expected while a cluster starts)"
        );
    }
    Err(ApiError::new(
        ErrorCode::CoordinatorNotAvailable,
        format!("{alive} brokers are up; {name} needs {replication_factor}"),
    ))
}

/// How long a first use waits for an internal topic that a concurrent request
/// is creating to reach this shard.
const INTERNAL_TOPIC_VISIBLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An internal topic made on first use, as Kafka makes its coordinators'
/// topics on the first FindCoordinator: created with `configs()` (retention
/// off besides) unless this shard has it already; if a concurrent request
/// is creating it, waits until this shard has it. Whether it is there.
pub async fn ensure_internal_topic(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: impl FnOnce() -> BTreeMap<String, String>,
) -> bool {
    if local().metadata().topics.contains_key(name) {
        return true;
    }
    let mut configs = configs();
    // Kept small by its coordinator, never by time or size retention.
    configs.insert("retention.ms".to_string(), "-1".to_string());
    configs.insert("retention.bytes".to_string(), "-1".to_string());
    match create_internal_topic(name.to_string(), partitions, replication_factor, configs).await {
        Ok(()) => true,
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => {
            local().wait_for_topic(name, INTERNAL_TOPIC_VISIBLE_TIMEOUT).await
        }
        Err(_) => false,
    }
}

pub async fn delete_topic(name: String) -> Result<(), ApiError> {
    on_controller(move |c| c.delete_topic(&name).map(|change| (change, ()))).await
}

pub async fn create_partitions(name: String, count: i32, validate_only: bool) -> Result<(), ApiError> {
    on_controller(move |c| {
        c.create_partitions(&name, count, validate_only)
            .map(|change| (change, ()))
    })
    .await
}

pub async fn alter_topic_configs(
    name: String,
    ops: Vec<(String, ConfigOp, Option<String>)>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ApiError> {
    on_controller(move |c| {
        c.alter_topic_configs(&name, &ops, replace_all, validate_only)
            .map(|change| (change, ()))
    })
    .await
}

/// UpdateFeatures: every update is checked before any is made, and all are
/// made together (`kafka-features upgrade|downgrade`).
pub async fn update_features(updates: Vec<FeatureUpdate>, validate_only: bool) -> Result<(), ApiError> {
    on_controller(move |c| c.update_features(&updates, validate_only).map(|change| (change, ()))).await
}

pub async fn alter_broker_configs(
    ops: Vec<(String, ConfigOp, Option<String>)>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ApiError> {
    on_controller(move |c| {
        c.alter_broker_configs(&ops, replace_all, validate_only)
            .map(|change| (change, ()))
    })
    .await
}

/// Cluster mode: proposes each of `records` to the metadata quorum and
/// answers each one's outcome once this node's metadata includes every
/// accepted one (leader elections, reassignments: records the quorum decides).
pub async fn propose_records(records: Vec<Record>) -> Vec<Result<(), ApiError>> {
    let count = records.len();
    submit_to(CONTROLLER_SHARD, move || async move {
        let shard = local();
        let controller = shard.controller.as_ref().expect("controller lives on shard 0");
        let Some(quorum) = crate::cluster::quorum::get() else {
            let refused = || {
                Err(ApiError::new(
                    ErrorCode::NotController,
                    "this broker is not in cluster mode",
                ))
            };
            return records.iter().map(|_| refused()).collect();
        };
        let mut outcomes = Vec::with_capacity(records.len());
        let mut index = 0;
        for record in records {
            outcomes.push(match quorum.propose(record).await {
                Ok(i) => {
                    index = index.max(i);
                    Ok(())
                }
                Err(e) => Err(ApiError::new(e.code, e.message)),
            });
        }
        if let Err(e) = controller.wait_for_view(index).await {
            return outcomes.into_iter().map(|o| o.and(Err(e.clone()))).collect();
        }
        outcomes
    })
    .await
    .unwrap_or_else(|_| {
        (0..count)
            .map(|_| Err(ApiError::new(ErrorCode::LeaderNotAvailable, "broker is shutting down")))
            .collect()
    })
}

/// For requests that name many partitions: `prepared` holds each one's
/// record, or the answer it already has. Proposes the records and returns
/// every partition's outcome, in order.
pub async fn propose_prepared(prepared: Vec<Result<Record, ApiError>>) -> Vec<Result<(), ApiError>> {
    let mut outcomes: Vec<Result<(), ApiError>> = Vec::with_capacity(prepared.len());
    let mut records = Vec::new();
    let mut proposed_at = Vec::new();
    for p in prepared {
        match p {
            Ok(record) => {
                proposed_at.push(outcomes.len());
                records.push(record);
                outcomes.push(Ok(()));
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    for (at, outcome) in proposed_at.into_iter().zip(propose_records(records).await) {
        outcomes[at] = outcome;
    }
    outcomes
}

pub async fn allocate_producer_id() -> Result<i64, ApiError> {
    on_controller(|c| Ok(c.allocate_producer_id())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(level: i16, kind: UpgradeKind) -> FeatureUpdate {
        FeatureUpdate {
            feature: "transaction.version".into(),
            level,
            kind,
        }
    }

    #[test]
    fn feature_updates_move_as_their_upgrade_type_allows() {
        let check = |u: FeatureUpdate, finalized| check_feature_update(&u, 0, 2, finalized).map_err(|e| e.code);
        assert_eq!(check(update(1, UpgradeKind::SafeDowngrade), 2), Ok(()));
        assert_eq!(check(update(0, UpgradeKind::UnsafeDowngrade), 2), Ok(()));
        assert_eq!(check(update(2, UpgradeKind::Upgrade), 1), Ok(()));
        assert_eq!(
            check(update(2, UpgradeKind::Upgrade), 2),
            Ok(()),
            "to the same level: nothing to do"
        );
        for refused in [
            update(1, UpgradeKind::Upgrade),
            update(3, UpgradeKind::Upgrade),
            update(-1, UpgradeKind::UnsafeDowngrade),
        ] {
            assert_eq!(check(refused, 2), Err(ErrorCode::InvalidUpdateVersion));
        }
        assert_eq!(
            check(update(2, UpgradeKind::SafeDowngrade), 1),
            Err(ErrorCode::InvalidUpdateVersion),
            "a downgrade cannot go up"
        );
    }
}
