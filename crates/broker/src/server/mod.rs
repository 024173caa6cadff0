//! The composition root: prepares the data directory, binds the listeners,
//! starts the shards, and turns SIGINT/SIGTERM into a clean shutdown.

mod metrics_endpoint;

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::future::{Either, select};
use tracing::{info, warn};

use crate::cluster::controller::{self, ClusterView};
use crate::cluster::metadata::{self, BrokerEndpoint, Metadata};
use crate::cluster::quorum::{ClusterImage, Liveness, OnChange, Quorum, QuorumConfig, Record};
use crate::cluster::shard::ShardState;
use crate::config::BrokerConfig;
use crate::metrics::TaskKind;
use crate::model::TopicPartition;
use crate::net::admission::Admission;
use crate::net::{self, connection};
use crate::runtime;

/// mimalloc's `purge_delay` option (mi_option_purge_delay in mimalloc.h).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Freed memory stays mapped this long before it goes back to the OS. Request
/// frames are large and short-lived: with mimalloc's 10 ms default every frame
/// faulted in fresh (zeroed, often as 2 MiB huge pages) memory; measured on
/// 2 GB of 1000-byte produce, page faults fell from ~2,100 to ~30.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(5);
const REGISTRATION_RETRY: Duration = Duration::from_millis(500);

pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    // SAFETY: setting a documented mimalloc option; it takes effect for later frees.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    raise_fd_limit();
    watch_clock_skew_file();
    crate::storage::space::install(&config.data_dir)
        .with_context(|| format!("cannot write the space reserve in {}", config.data_dir.display()))?;
    let metadata = prepare_metadata(&config)?;
    remove_orphan_partitions(&config, &metadata);
    let first = net::bind_reuseport(config.listen)
        .with_context(|| format!("cannot listen on {} (listeners, --listen)", config.listen))?;
    let bound = first.local_addr()?;
    // Port 0 picks a free port: the listener and what is advertised use the one bound.
    config.listen = bound;
    let metrics_listener = match config.metrics_enabled {
        true => Some(TcpListener::bind(config.metrics_listen).with_context(|| {
            format!(
                "cannot listen for metrics on {} (metrics.listener, --metrics-listen)",
                config.metrics_listen
            )
        })?),
        false => None,
    };
    let mut listeners = vec![Some(first)];
    for _ in 1..config.shards {
        listeners.push(Some(net::bind_reuseport(bound)?));
    }
    info!(
        listen = %bound,
        advertised = ?config.advertised_endpoint(),
        data_dir = %config.data_dir.display(),
        shards = config.shards,
        cluster_id = %metadata.cluster_id,
        broker_id = config.broker_id,
        "sluice listening"
    );
    let config = Arc::new(config);
    let metadata = Arc::new(metadata);
    let admission = Arc::new(Admission::new(config.connection_limits.clone()));
    // Start-up hand-off only: each shard takes its listener once.
    let listeners = Arc::new(Mutex::new(listeners));
    let shards = {
        let config = Arc::clone(&config);
        let admission = Arc::clone(&admission);
        runtime::start(config.shards, move |id| {
            let listener = listeners.lock().expect("listener hand-off")[id]
                .take()
                .expect("one listener per shard");
            shard_main(
                id,
                Arc::clone(&config),
                Arc::clone(&metadata),
                listener,
                Arc::clone(&admission),
            )
        })
    };
    if let Some(quorum) = config.quorum().map_err(anyhow::Error::msg)? {
        join_quorum(&config, &quorum, shards.handle())?;
    }
    if let Some(listener) = metrics_listener {
        crate::metrics::enable();
        metrics_endpoint::spawn(listener, shards.handle(), admission)?;
    }
    wait_for_signal()?;
    info!("shutting down");
    shards.run_on_all_blocking(|| async {
        let state = crate::cluster::shard::local();
        state.shutdown().await;
        let zero_copy = net::zero_copy::fetch_zero_copy_bytes();
        info!(shard = state.id, fetch_bytes_zero_copy = zero_copy, "shard stopped");
    });
    info!("shutdown complete");
    Ok(())
}

/// Cluster mode: starts this node's Raft voter, hands every change it
/// applies to the controller shard, and registers this broker.
fn join_quorum(config: &BrokerConfig, quorum: &QuorumConfig, shards: runtime::ShardsHandle) -> anyhow::Result<()> {
    let on_change: OnChange = Box::new(move |image: &ClusterImage, leader_id: u64| {
        let view = ClusterView {
            brokers: image
                .brokers
                .values()
                .map(|b| {
                    let endpoint = BrokerEndpoint {
                        host: b.host.clone(),
                        port: b.port,
                        fenced: image.fenced.contains(&b.broker_id),
                    };
                    (b.broker_id, endpoint)
                })
                .collect(),
            topics: image.topics.clone(),
            features: image.features.clone(),
            controller_id: if leader_id == 0 { -1 } else { leader_id as i32 },
            applied_index: image.applied_index,
        };
        let _ = shards.post(controller::CONTROLLER_SHARD, move || {
            controller::apply_cluster_view(view)
        });
    });
    let liveness = Liveness::new(
        Duration::from_millis(config.broker_session_timeout_ms),
        config.unclean_leader_election,
        config
            .auto_leader_rebalance
            .then(|| Duration::from_secs(config.leader_imbalance_check_interval_s)),
    );
    let handle = Quorum::start(config.broker_id, quorum, &config.data_dir, on_change, liveness)?;
    if !quorum.roles.broker {
        info!("controller only: this node hosts no partitions and is not listed to clients");
        return Ok(());
    }
    let (host, port) = config.advertised_endpoint();
    let registration = Record::RegisterBroker {
        broker_id: config.broker_id,
        host,
        port,
        incarnation: uuid::Uuid::new_v4(),
    };
    std::thread::Builder::new()
        .name("register".into())
        .spawn(move || register(&handle, registration))?;
    Ok(())
}

/// Retries until the quorum has a leader and commits the registration.
fn register(quorum: &Quorum, registration: Record) {
    // Bounded by the process: a broker keeps trying to join its cluster.
    for attempt in 1u64.. {
        match quorum.propose_blocking(registration.clone(), REGISTRATION_TIMEOUT) {
            Ok(_) => {
                info!(attempt, "registered with the metadata quorum");
                return;
            }
            Err(e) if attempt % 10 == 0 => warn!(attempt, "not registered yet: {}", e.message),
            Err(_) => {}
        }
        std::thread::sleep(REGISTRATION_RETRY);
    }
}

fn wait_for_signal() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    signals.forever().next();
    Ok(())
}

async fn shard_main(
    id: usize,
    config: Arc<BrokerConfig>,
    metadata: Arc<Metadata>,
    listener: TcpListener,
    admission: Arc<Admission>,
) {
    let state = ShardState::install(id, Arc::clone(&config), Arc::clone(&metadata));
    // Before the first await: other shards, up sooner, send their tasks here
    // while this one still opens its logs, and those tasks use the coordinators.
    let coordinator = crate::group::coordinator::Coordinator::install(config.group.clone());
    let txn_coordinator = crate::txn::coordinator::TxnCoordinator::install(config.txn.clone());
    state.apply_metadata(metadata).await;
    runtime::request_bytes::set_max(config.queued_request_bytes_per_shard());
    let maintained = Rc::clone(&state);
    compio::runtime::spawn(runtime::supervised(TaskKind::Maintenance, move || {
        Rc::clone(&maintained).maintenance_loop()
    }))
    .detach();
    compio::runtime::spawn(runtime::supervised(TaskKind::GroupTicks, move || {
        Rc::clone(&coordinator).tick_loop()
    }))
    .detach();
    compio::runtime::spawn(runtime::supervised(TaskKind::TxnTicks, move || {
        Rc::clone(&txn_coordinator).tick_loop()
    }))
    .detach();
    let listener = compio::net::TcpListener::from_std(listener).expect("adopt listener");
    let limits = || connection::Limits {
        request_max_bytes: config.socket_request_max_bytes,
        idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
        send_method: config.fetch_send_method,
    };
    while !state.is_stopping() {
        let stop = state.stop.listen();
        if state.is_stopping() {
            break;
        }
        let accept = std::pin::pin!(listener.accept());
        match select(accept, stop).await {
            Either::Left((Ok((stream, peer)), _)) => match admission.admit(peer.ip()) {
                Ok(ticket) => {
                    let client_host: Rc<str> = format!("/{}", peer.ip()).into();
                    let serve = connection::serve(stream, client_host, limits());
                    compio::runtime::spawn(async move {
                        serve.await;
                        drop(ticket);
                    })
                    .detach();
                }
                Err(why) => {
                    // Dropping the stream closes it, as Kafka closes a connection over its limits.
                    crate::metrics::record_connection_refused();
                    tracing::debug!(shard = id, %peer, ?why, "connection refused");
                }
            },
            Either::Left((Err(e), _)) => {
                // Out of file descriptors, usually: back off instead of spinning.
                warn!(shard = id, "accept failed: {e}");
                compio::time::sleep(Duration::from_millis(50)).await;
            }
            Either::Right(_) => break,
        }
    }
    state.until_shut_down().await;
}

/// Loads the stored metadata, or starts it; checks the cluster id.
fn prepare_metadata(config: &BrokerConfig) -> anyhow::Result<Metadata> {
    let mut metadata = Metadata::load(&config.data_dir)?.unwrap_or_default();
    match (&config.cluster_id, metadata.cluster_id.is_empty()) {
        (Some(wanted), false) if *wanted != metadata.cluster_id => bail!(
            "cluster.id {wanted} does not match {} stored in {}",
            metadata.cluster_id,
            config.data_dir.display()
        ),
        (Some(wanted), true) => metadata.cluster_id = wanted.clone(),
        (None, true) if !config.controller_voters.is_empty() => {
            metadata.cluster_id = metadata::quorum_cluster_id(&config.controller_voters)
        }
        (None, true) => metadata.cluster_id = metadata::new_cluster_id(),
        _ => {}
    }
    metadata.broker_id = config.broker_id;
    if !config.controller_voters.is_empty() {
        // Who leads the quorum now is learned from the quorum, not from the last run.
        metadata.controller_id = Some(-1);
    }
    metadata.store(&config.data_dir)?;
    metadata::write_meta_properties(&config.data_dir, &metadata.cluster_id, config.broker_id)?;
    Ok(metadata)
}

/// Partition directories of deleted topics (a crash mid-delete) are removed at start.
fn remove_orphan_partitions(config: &BrokerConfig, metadata: &Metadata) {
    let Ok(entries) = std::fs::read_dir(&config.data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        if name == crate::cluster::quorum::LOG_DIR_NAME {
            continue; // the metadata quorum's log, not a partition
        }
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(crate::cluster::shard::DELETED_SUFFIX))
        {
            warn!(dir = %entry.path().display(), "removing a partition deleted before the last stop");
            let _ = std::fs::remove_dir_all(entry.path());
            continue;
        }
        let Some(tp) = name.to_str().and_then(TopicPartition::from_dir_name) else {
            continue;
        };
        let live = metadata
            .topics
            .get(&tp.topic)
            .is_some_and(|t| tp.partition < t.partitions);
        if !live {
            warn!(partition = %tp, "removing directory of a deleted partition");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Names a file holding a number of milliseconds by which the broker's wall
/// clock (`model::now_ms`) is moved, re-read every 100 ms: how `sluice
/// chaos` and the tests make one broker's clock jump without setting the
/// machine's. Absent in production.
pub const CLOCK_SKEW_FILE_ENV: &str = "SLUICE_CLOCK_SKEW_FILE";
const CLOCK_SKEW_POLL: Duration = Duration::from_millis(100);

fn watch_clock_skew_file() {
    let Some(path) = std::env::var_os(CLOCK_SKEW_FILE_ENV) else {
        return;
    };
    warn!(file = %std::path::Path::new(&path).display(), "the wall clock follows a skew file (a test hook)");
    let watch = move || {
        let mut current_ms = 0;
        loop {
            let read = std::fs::read_to_string(&path).ok();
            let skew_ms = read.and_then(|t| t.trim().parse::<i64>().ok()).unwrap_or(current_ms);
            if skew_ms != current_ms {
                info!(skew_ms, "the wall clock jumps");
                crate::model::set_wall_clock_skew_ms(skew_ms);
                current_ms = skew_ms;
            }
            std::thread::sleep(CLOCK_SKEW_POLL);
        }
    };
    std::thread::Builder::new()
        .name("clock-skew".into())
        .spawn(watch)
        .expect("spawning the clock-skew watcher");
}

/// Many idle connections need many descriptors: take the hard limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
