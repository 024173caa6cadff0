//! Fetch sessions (KIP-227). A client that fetches many partitions names them
//! once, in a full fetch that opens a session; its later (incremental)
//! fetches carry only the partitions whose fetch position changed, and the
//! answers leave out partitions with nothing new for it.
//!
//! Each shard keeps its own cache, as Kafka shards its own: a connection
//! lives on one shard, session ids carry their shard in their range, and the
//! id of a session on another shard is FETCH_SESSION_ID_NOT_FOUND, after
//! which the client starts over with a full fetch.
//! `max.incremental.fetch.session.cache.slots` is split between the shards.
//!
//! Eviction is Kafka's: a full cache makes room by dropping a session unused
//! for `EVICTION_MS`, else the smallest session older than that if the new
//! one is at least as large; followers' (privileged) sessions go last.

use std::collections::HashMap;
use std::rc::Rc;

use uuid::Uuid;

use crate::model::ErrorCode;

pub const INVALID_SESSION_ID: i32 = 0;
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;
/// Kafka's fixed `min.incremental.fetch.session.eviction.ms`.
const EVICTION_MS: i64 = 120_000;
/// Partitions that the sessions of one shard may hold together (a bound on
/// memory: about 100 bytes each). A session that would pass it is not kept.
const CACHED_PARTITIONS_MAX: usize = 1_000_000;

/// The epoch the request after one carrying `epoch` must carry.
pub fn next_epoch(epoch: i32) -> i32 {
    match epoch {
        e if e < 0 => FINAL_EPOCH,
        i32::MAX => 1,
        e => e + 1,
    }
}

/// How a session names a topic: by id from Fetch v13, by name before.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Id(Uuid),
    Name(Rc<str>),
}

/// One partition of a session: what the client asked for, and what the
/// last answer told it (so the next can leave it out if nothing changed).
#[derive(Clone, Debug)]
pub struct CachedPartition {
    pub topic: TopicRef,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: u64,
    pub current_leader_epoch: i32,
    /// -1 until answered, and after an error: the next answer includes it.
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl CachedPartition {
    fn key(&self) -> (TopicRef, i32) {
        (self.topic.clone(), self.partition)
    }
}

/// What one answer found for a partition.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    pub has_records: bool,
    pub failed: bool,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Whether an incremental answer must carry a partition (Kafka's rule): it
/// has records, an error, or offsets the client has not been told.
fn must_respond(cached: &CachedPartition, seen: &Observed) -> bool {
    seen.has_records
        || seen.failed
        || cached.high_watermark != seen.high_watermark
        || cached.log_start_offset != seen.log_start_offset
}

struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    privileged: bool,
    uses_topic_ids: bool,
    created_ms: i64,
    last_used_ms: i64,
    /// In answer order: partitions that returned records move to the back,
    /// so that a response budget does not always favour the same ones.
    partitions: Vec<CachedPartition>,
}

impl Session {
    fn update(&mut self, updates: &[CachedPartition], forgotten: &[(TopicRef, i32)]) {
        // Most incremental requests change nothing: no index to build then.
        if updates.is_empty() && forgotten.is_empty() {
            return;
        }
        let mut index: HashMap<(TopicRef, i32), usize> =
            self.partitions.iter().enumerate().map(|(i, p)| (p.key(), i)).collect();
        for update in updates {
            match index.get(&update.key()) {
                Some(&i) => {
                    let cached = &mut self.partitions[i];
                    cached.fetch_offset = update.fetch_offset;
                    cached.max_bytes = update.max_bytes;
                    cached.current_leader_epoch = update.current_leader_epoch;
                }
                None => {
                    index.insert(update.key(), self.partitions.len());
                    self.partitions.push(update.clone());
                }
            }
        }
        if !forgotten.is_empty() {
            let forgotten: std::collections::HashSet<&(TopicRef, i32)> = forgotten.iter().collect();
            self.partitions.retain(|p| !forgotten.contains(&p.key()));
        }
    }

    /// Kafka's eviction order: unprivileged before privileged, then smaller first.
    fn evictable_key(&self, id: i32) -> (bool, usize, i32) {
        (self.privileged, self.partitions.len(), id)
    }
}

/// How the handler serves one Fetch.
#[derive(Debug)]
pub enum Plan {
    /// Fetch the request's partitions; no session.
    Sessionless,
    /// Fetch the request's partitions, then try to open a session on them.
    Full,
    /// Fetch these partitions of session `id` (in its order); the answer
    /// completes the request whose successor carries `epoch`.
    Incremental {
        id: i32,
        epoch: i32,
        partitions: Vec<CachedPartition>,
    },
    /// Answer with this top-level error and nothing else.
    Refused(ErrorCode),
}

/// What a cache did since the broker started (for the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    pub opened: u64,
    pub evicted: u64,
    /// Incremental fetches that passed the session checks.
    pub incremental: u64,
}

pub struct SessionCache {
    /// Session ids of this shard lie in `[id_min, id_max)`.
    id_min: i32,
    id_max: i32,
    slots: usize,
    sessions: HashMap<i32, Session>,
    cached_partitions: usize,
    pub counts: SessionCounts,
    /// xorshift state for session ids; they need be unique, not secret.
    random: u64,
}

impl SessionCache {
    /// The cache of shard `shard` of `shards`, with its share of `slots_total`.
    pub fn new(shard: usize, shards: usize, slots_total: usize, seed: u64) -> Self {
        assert!(shard < shards, "shard {shard} of {shards}");
        let range = i32::MAX / shards as i32;
        let slots = slots_total / shards + usize::from(shard < slots_total % shards);
        SessionCache {
            id_min: (shard as i32 * range).max(1),
            id_max: (shard as i32 + 1) * range,
            slots,
            sessions: HashMap::new(),
            cached_partitions: 0,
            counts: SessionCounts::default(),
            random: seed | 1,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn cached_partitions(&self) -> usize {
        self.cached_partitions
    }

    /// Decides how a Fetch carrying `session_id` and `epoch` is served, and
    /// applies an incremental request's changes to its session.
    pub fn begin(
        &mut self,
        session_id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        updates: &[CachedPartition],
        forgotten: &[(TopicRef, i32)],
        now_ms: i64,
    ) -> Plan {
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // A full fetch closes the session it names.
            self.remove(session_id);
            return if epoch == FINAL_EPOCH {
                Plan::Sessionless
            } else {
                Plan::Full
            };
        }
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Plan::Refused(ErrorCode::FetchSessionIdNotFound);
        };
        if session.epoch != epoch {
            return Plan::Refused(ErrorCode::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != uses_topic_ids {
            return Plan::Refused(ErrorCode::FetchSessionTopicIdError);
        }
        let before = session.partitions.len();
        session.update(updates, forgotten);
        let after = session.partitions.len();
        self.cached_partitions = self.cached_partitions - before + after;
        if after == 0 {
            self.remove(session_id);
            return Plan::Sessionless;
        }
        if self.cached_partitions > CACHED_PARTITIONS_MAX {
            // Over the memory bound: as if evicted; the client starts over.
            self.remove(session_id);
            return Plan::Refused(ErrorCode::FetchSessionIdNotFound);
        }
        session.last_used_ms = now_ms;
        session.epoch = next_epoch(session.epoch);
        self.counts.incremental += 1;
        Plan::Incremental {
            id: session_id,
            epoch: session.epoch,
            partitions: session.partitions.clone(),
        }
    }

    /// Opens a session over a full fetch's partitions, as answered; returns
    /// its id, or INVALID_SESSION_ID when the cache has no room for it.
    pub fn open(
        &mut self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<CachedPartition>,
        now_ms: i64,
    ) -> i32 {
        if self.cached_partitions + partitions.len() > CACHED_PARTITIONS_MAX {
            return INVALID_SESSION_ID;
        }
        if self.sessions.len() >= self.slots && !self.evict_for(privileged, partitions.len(), now_ms) {
            return INVALID_SESSION_ID;
        }
        let id = self.new_id();
        self.cached_partitions += partitions.len();
        self.counts.opened += 1;
        self.sessions.insert(
            id,
            Session {
                epoch: next_epoch(INITIAL_EPOCH),
                privileged,
                uses_topic_ids,
                created_ms: now_ms,
                last_used_ms: now_ms,
                partitions,
            },
        );
        assert!(self.sessions.len() <= self.slots, "sessions within the slots");
        id
    }

    /// Records what an incremental answer found, in the order `begin` gave
    /// the partitions; returns which of them the answer carries. A session
    /// whose epoch moved meanwhile had a second request pass its check: as
    /// Kafka, that answer is INVALID_FETCH_SESSION_EPOCH.
    pub fn finish(
        &mut self,
        id: i32,
        epoch: i32,
        asked: &[CachedPartition],
        seen: &[Observed],
    ) -> Result<Vec<bool>, ErrorCode> {
        assert_eq!(asked.len(), seen.len(), "one observation per partition");
        let include: Vec<bool> = asked.iter().zip(seen).map(|(c, s)| must_respond(c, s)).collect();
        let Some(session) = self.sessions.get_mut(&id) else {
            // Evicted meanwhile: answer anyway; the next request starts over.
            return Ok(include);
        };
        if session.epoch != epoch {
            return Err(ErrorCode::InvalidFetchSessionEpoch);
        }
        assert_eq!(
            session.partitions.len(),
            asked.len(),
            "only begin changes a session, and it moves the epoch"
        );
        let mut kept = Vec::with_capacity(asked.len());
        let mut moved = Vec::new();
        for (mut cached, s) in std::mem::take(&mut session.partitions).into_iter().zip(seen) {
            cached.high_watermark = if s.failed { -1 } else { s.high_watermark };
            cached.log_start_offset = s.log_start_offset;
            if s.has_records {
                moved.push(cached)
            } else {
                kept.push(cached)
            }
        }
        kept.append(&mut moved);
        session.partitions = kept;
        Ok(include)
    }

    fn remove(&mut self, id: i32) {
        if let Some(session) = self.sessions.remove(&id) {
            self.cached_partitions -= session.partitions.len();
        }
    }

    fn evict_for(&mut self, privileged: bool, size: usize, now_ms: i64) -> bool {
        let stale = self
            .sessions
            .iter()
            .min_by_key(|(id, s)| (s.last_used_ms, **id))
            .filter(|(_, s)| now_ms - s.last_used_ms > EVICTION_MS)
            .map(|(id, _)| *id);
        let victim = stale.or_else(|| {
            let (victim, key) = self
                .sessions
                .iter()
                .filter(|(_, s)| now_ms - s.created_ms > EVICTION_MS || (privileged && !s.privileged))
                .map(|(id, s)| (*id, s.evictable_key(*id)))
                .min_by_key(|(_, key)| *key)?;
            ((privileged, size, 0) >= key).then_some(victim)
        });
        let Some(victim) = victim else {
            return false;
        };
        self.remove(victim);
        self.counts.evicted += 1;
        true
    }

    fn new_id(&mut self) -> i32 {
        // Bounded: at most `slots` ids are taken out of a range of millions.
        loop {
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            let span = (self.id_max - self.id_min) as u64;
            let id = self.id_min + (self.random % span) as i32;
            if id != INVALID_SESSION_ID && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(topic: &str, partition: i32, fetch_offset: i64) -> CachedPartition {
        CachedPartition {
            topic: TopicRef::Name(Rc::from(topic)),
            partition,
            fetch_offset,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
            high_watermark: -1,
            log_start_offset: -1,
        }
    }

    fn seen(has_records: bool, high_watermark: i64) -> Observed {
        Observed {
            has_records,
            failed: false,
            high_watermark,
            log_start_offset: 0,
        }
    }

    fn open(cache: &mut SessionCache, partitions: usize, now_ms: i64) -> i32 {
        let parts = (0..partitions as i32)
            .map(|p| CachedPartition {
                high_watermark: 0,
                log_start_offset: 0,
                ..part("t", p, 0)
            })
            .collect();
        cache.open(false, false, parts, now_ms)
    }

    #[test]
    fn epochs_advance_and_wrap_past_the_largest() {
        assert_eq!(next_epoch(INITIAL_EPOCH), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
    }

    #[test]
    fn session_errors_are_kafkas() {
        let mut cache = SessionCache::new(0, 1, 10, 7);
        assert!(matches!(
            cache.begin(0, 5, false, &[], &[], 0),
            Plan::Refused(ErrorCode::FetchSessionIdNotFound)
        ));
        let id = open(&mut cache, 2, 0);
        assert_ne!(id, INVALID_SESSION_ID);
        assert!(matches!(
            cache.begin(id, 2, false, &[], &[], 0),
            Plan::Refused(ErrorCode::InvalidFetchSessionEpoch)
        ));
        assert!(matches!(
            cache.begin(id, 1, true, &[], &[], 0),
            Plan::Refused(ErrorCode::FetchSessionTopicIdError)
        ));
        let Plan::Incremental { epoch, partitions, .. } = cache.begin(id, 1, false, &[], &[], 0) else {
            panic!("session 1 serves epoch 1");
        };
        assert_eq!((epoch, partitions.len()), (2, 2));
        // A full fetch naming the session closes it.
        assert!(matches!(
            cache.begin(id, FINAL_EPOCH, false, &[], &[], 0),
            Plan::Sessionless
        ));
        assert_eq!(cache.len(), 0);
        assert!(matches!(
            cache.begin(id, 2, false, &[], &[], 0),
            Plan::Refused(ErrorCode::FetchSessionIdNotFound)
        ));
    }

    #[test]
    fn incremental_requests_add_update_and_forget() {
        let mut cache = SessionCache::new(0, 1, 10, 7);
        let id = open(&mut cache, 2, 0);
        let forgotten = [(TopicRef::Name(Rc::from("t")), 0)];
        let Plan::Incremental { partitions, .. } =
            cache.begin(id, 1, false, &[part("t", 1, 50), part("u", 0, 3)], &forgotten, 0)
        else {
            panic!("incremental");
        };
        let got: Vec<(i32, i64)> = partitions.iter().map(|p| (p.partition, p.fetch_offset)).collect();
        assert_eq!(got, vec![(1, 50), (0, 3)]);
        assert_eq!(cache.cached_partitions(), 2);
        // Forgetting every partition closes the session.
        let all = [(TopicRef::Name(Rc::from("t")), 1), (TopicRef::Name(Rc::from("u")), 0)];
        assert!(matches!(cache.begin(id, 2, false, &[], &all, 0), Plan::Sessionless));
        assert_eq!((cache.len(), cache.cached_partitions()), (0, 0));
    }

    #[test]
    fn answers_leave_out_what_did_not_change_and_rotate_what_returned_records() {
        let mut cache = SessionCache::new(0, 1, 10, 7);
        let id = open(&mut cache, 3, 0);
        let Plan::Incremental { epoch, partitions, .. } = cache.begin(id, 1, false, &[], &[], 0) else {
            panic!("incremental");
        };
        let include = cache
            .finish(id, epoch, &partitions, &[seen(true, 5), seen(false, 0), seen(false, 9)])
            .unwrap();
        assert_eq!(include, vec![true, false, true]);
        let Plan::Incremental { epoch, partitions, .. } = cache.begin(id, epoch, false, &[], &[], 0) else {
            panic!("incremental");
        };
        let order: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
        assert_eq!(order, vec![1, 2, 0], "the partition that returned records went last");
        // Nothing new anywhere: an empty answer. An error always shows, and
        // shows the partition again once it clears.
        let failed = Observed {
            failed: true,
            ..seen(false, -1)
        };
        let include = cache
            .finish(id, epoch, &partitions, &[seen(false, 0), seen(false, 9), failed])
            .unwrap();
        assert_eq!(include, vec![false, false, true]);
        let Plan::Incremental { epoch, partitions, .. } = cache.begin(id, epoch, false, &[], &[], 0) else {
            panic!("incremental");
        };
        let include = cache
            .finish(
                id,
                epoch,
                &partitions,
                &[seen(false, 0), seen(false, 9), seen(false, 5)],
            )
            .unwrap();
        assert_eq!(include, vec![false, false, true]);
    }

    #[test]
    fn a_request_that_overtook_another_makes_its_answer_an_epoch_error() {
        let mut cache = SessionCache::new(0, 1, 10, 7);
        let id = open(&mut cache, 1, 0);
        let Plan::Incremental { epoch, partitions, .. } = cache.begin(id, 1, false, &[], &[], 0) else {
            panic!("incremental");
        };
        assert!(matches!(
            cache.begin(id, epoch, false, &[], &[], 0),
            Plan::Incremental { .. }
        ));
        assert_eq!(
            cache.finish(id, epoch, &partitions, &[seen(false, 0)]),
            Err(ErrorCode::InvalidFetchSessionEpoch)
        );
    }

    #[test]
    fn a_full_cache_evicts_as_kafka_does() {
        let mut cache = SessionCache::new(0, 1, 2, 7);
        let small = open(&mut cache, 1, 0);
        let large = open(&mut cache, 5, 0);
        // Both are new: nobody is evicted, the newcomer gets no session.
        assert_eq!(open(&mut cache, 9, 1_000), INVALID_SESSION_ID);
        // Past the protection window, with both still in use, a larger
        // newcomer evicts the smallest...
        for id in [small, large] {
            cache.sessions.get_mut(&id).unwrap().last_used_ms = EVICTION_MS;
        }
        let newer = open(&mut cache, 3, EVICTION_MS + 1);
        assert_ne!(newer, INVALID_SESSION_ID);
        assert!(!cache.sessions.contains_key(&small) && cache.sessions.contains_key(&large));
        // ... and a smaller one evicts nobody.
        assert_eq!(open(&mut cache, 1, EVICTION_MS + 2), INVALID_SESSION_ID);
        // A session unused for the window goes first, whatever its size.
        let later = 2 * EVICTION_MS + 10;
        cache.sessions.get_mut(&newer).unwrap().last_used_ms = later;
        assert_ne!(open(&mut cache, 1, later), INVALID_SESSION_ID);
        assert!(!cache.sessions.contains_key(&large));
        assert_eq!(cache.counts.evicted, 2);
        assert_eq!(cache.counts.opened, 4);
        assert_eq!(cache.cached_partitions(), 4);
    }

    #[test]
    fn shards_split_the_slots_and_the_id_space() {
        let caches: Vec<SessionCache> = (0..3).map(|s| SessionCache::new(s, 3, 1000, 7)).collect();
        assert_eq!(caches.iter().map(|c| c.slots).sum::<usize>(), 1000);
        for pair in caches.windows(2) {
            assert_eq!(pair[0].id_max, pair[1].id_min);
        }
        let mut none = SessionCache::new(0, 1, 0, 7);
        assert_eq!(open(&mut none, 1, 0), INVALID_SESSION_ID);
    }
}
