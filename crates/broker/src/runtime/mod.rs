//! The shard runtime: one OS thread per shard, pinned to a core, each running
//! its own compio io_uring event loop. Shards share no mutable state; work
//! crosses between them only as tasks on bounded mailboxes (`submit_to`).

pub mod request_bytes;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::FutureExt;
use tracing::{info, warn};

/// Tasks that may wait in one shard's mailbox before senders feel backpressure.
pub const MAILBOX_TASKS_MAX: usize = 4096;
/// Tasks from other shards that one shard runs at once. Past it the shard
/// stops taking tasks from its mailbox, the mailbox fills, and senders wait.
/// Remote tasks are short (reads, appends) or wait for a bounded time (an
/// acks=all append waits at most its request timeout); long polls do not
/// hold one (`shard::wait_for_any` parks on the requesting shard).
pub const REMOTE_TASKS_MAX: usize = 4096;

/// A unit of cross-shard work: built on the sender, run on the receiving shard.
type Task = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

struct ShardRuntime {
    id: usize,
    mailboxes: Arc<Vec<async_channel::Sender<Task>>>,
}

thread_local! {
    static CURRENT: RefCell<Option<ShardRuntime>> = const { RefCell::new(None) };
}

/// The id of the shard running on this thread. Panics off a shard thread.
pub fn shard_id() -> usize {
    CURRENT.with(|c| c.borrow().as_ref().expect("not on a shard thread").id)
}

pub fn shard_count() -> usize {
    CURRENT.with(|c| c.borrow().as_ref().expect("not on a shard thread").mailboxes.len())
}

/// Whether this thread is a shard (tests and tools run code off shards too).
pub fn on_shard() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

fn mailbox(shard: usize) -> async_channel::Sender<Task> {
    CURRENT.with(|c| c.borrow().as_ref().expect("not on a shard thread").mailboxes[shard].clone())
}

/// The shard was stopped before it could answer (only during shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStopped;

/// Runs `f` on shard `shard` and returns its result. On the current shard it
/// runs inline, with no message at all; otherwise the closure travels over the
/// target's bounded mailbox and the result comes back on a oneshot channel.
pub async fn submit_to<F, Fut, R>(shard: usize, f: F) -> Result<R, ShardStopped>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    if shard == shard_id() {
        return Ok(f().await);
    }
    let (tx, rx) = futures_channel::oneshot::channel();
    let task: Task = Box::new(move || {
        Box::pin(async move {
            let _ = tx.send(f().await);
        })
    });
    mailbox(shard).send(task).await.map_err(|_| ShardStopped)?;
    rx.await.map_err(|_| ShardStopped)
}

/// The running shards, as seen from outside them (the main thread).
pub struct Shards {
    handle: ShardsHandle,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

impl Shards {
    /// A handle other threads (the metrics endpoint) use to reach the shards.
    pub fn handle(&self) -> ShardsHandle {
        self.handle.clone()
    }

    /// Runs `f` on every shard and blocks until each has finished it.
    pub fn run_on_all_blocking<F, Fut>(&self, f: F)
    where
        F: Fn() -> Fut + Send + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.handle.collect_blocking(f);
    }
}

/// The shards' mailboxes, for threads that are not shards.
#[derive(Clone)]
pub struct ShardsHandle {
    mailboxes: Arc<Vec<async_channel::Sender<Task>>>,
}

impl ShardsHandle {
    pub fn count(&self) -> usize {
        self.mailboxes.len()
    }

    /// Tasks waiting in a shard's mailbox.
    pub fn mailbox_depth(&self, shard: usize) -> usize {
        self.mailboxes[shard].len()
    }

    /// Queues `f` on `shard` without waiting for it to run. Tasks posted from
    /// one thread run in the order posted. Only for threads that are not shards.
    pub fn post<F, Fut>(&self, shard: usize, f: F) -> Result<(), ShardStopped>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let task: Task = Box::new(move || Box::pin(f()));
        self.mailboxes[shard].send_blocking(task).map_err(|_| ShardStopped)
    }

    /// Runs `f` on every shard and blocks for the results, in shard order; a
    /// shard that has stopped gives none. Only for threads that are not shards.
    pub fn collect_blocking<F, Fut, R>(&self, f: F) -> Vec<R>
    where
        F: Fn() -> Fut + Send + Clone + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, R)>();
        let mut sent = 0;
        for (shard, mailbox) in self.mailboxes.iter().enumerate() {
            let f = f.clone();
            let done = done_tx.clone();
            let task: Task = Box::new(move || {
                Box::pin(async move {
                    let _ = done.send((shard, f().await));
                })
            });
            if mailbox.send_blocking(task).is_ok() {
                sent += 1;
            }
        }
        drop(done_tx);
        let mut results: Vec<(usize, R)> = done_rx.iter().take(sent).collect();
        results.sort_by_key(|(shard, _)| *shard);
        results.into_iter().map(|(_, r)| r).collect()
    }
}

/// Starts `count` shards. Each runs `main(shard_id)` on its own pinned thread
/// and serves its mailbox until `main` returns.
pub fn start<F, Fut>(count: usize, main: F) -> Shards
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    assert!(count > 0, "at least one shard");
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count)
        .map(|_| async_channel::bounded::<Task>(MAILBOX_TASKS_MAX))
        .unzip();
    let mailboxes = Arc::new(senders);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let threads = receivers
        .into_iter()
        .enumerate()
        .map(|(id, inbox)| {
            let mailboxes = Arc::clone(&mailboxes);
            let main = main.clone();
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || run_shard(id, core, mailboxes, inbox, main))
                .expect("spawn shard thread")
        })
        .collect();
    Shards {
        handle: ShardsHandle { mailboxes },
        threads,
    }
}

fn run_shard<F, Fut>(
    id: usize,
    core: Option<core_affinity::CoreId>,
    mailboxes: Arc<Vec<async_channel::Sender<Task>>>,
    inbox: async_channel::Receiver<Task>,
    main: F,
) where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    if let Some(core) = core
        && !core_affinity::set_for_current(core)
    {
        warn!(shard = id, "could not pin to core {}", core.id);
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(ShardRuntime { id, mailboxes }));
    let runtime = compio::runtime::Runtime::new().expect("create io_uring runtime");
    info!(shard = id, core = core.map(|c| c.id), driver = ?runtime.driver_type(), "shard started");
    runtime.block_on(async move {
        compio::runtime::spawn(serve_mailbox(id, inbox)).detach();
        main(id).await;
    });
}

/// Runs tasks from other shards, at most `REMOTE_TASKS_MAX` at once. A task
/// that panics is counted and logged; its sender sees `ShardStopped`, and the
/// shard goes on serving everyone else.
async fn serve_mailbox(id: usize, inbox: async_channel::Receiver<Task>) {
    let running = Rc::new(Cell::new(0usize));
    let finished = Rc::new(event_listener::Event::new());
    // Bounded by the mailbox capacity; ends when every sender is gone.
    loop {
        // Bounded: each wake means a running task finished.
        while running.get() >= REMOTE_TASKS_MAX {
            let listener = finished.listen();
            if running.get() < REMOTE_TASKS_MAX {
                break;
            }
            listener.await;
        }
        let Ok(task) = inbox.recv().await else { break };
        running.set(running.get() + 1);
        let slot = RunningSlot {
            running: Rc::clone(&running),
            finished: Rc::clone(&finished),
        };
        compio::runtime::spawn(async move {
            let _slot = slot;
            if AssertUnwindSafe(task()).catch_unwind().await.is_err() {
                crate::metrics::record_task_panic(crate::metrics::TaskKind::RemoteTask);
                tracing::error!(
                    shard = id,
                    "a task from another shard panicked; its sender gets an error"
                );
            }
        })
        .detach();
    }
}

/// One running remote task's place in `REMOTE_TASKS_MAX`; freed on drop, so a
/// panicking task frees it too.
struct RunningSlot {
    running: Rc<Cell<usize>>,
    finished: Rc<event_listener::Event>,
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        let running = self.running.get();
        assert!(running > 0, "remote task count underflows");
        self.running.set(running - 1);
        self.finished.notify(1);
    }
}

/// The first pause before a panicked shared task restarts; it doubles on each
/// panic in a row, up to the max, so a task that panics at once on every run
/// (a bad partition it trips over) costs a restart every few seconds, not a
/// busy loop that fills the disk with backtraces.
const RESTART_DELAY_MS_MIN: u64 = 100;
const RESTART_DELAY_MS_MAX: u64 = 10_000;
/// A run this long resets the pause to the minimum.
const RESTART_HEALTHY_RUN_MS: u64 = 60_000;

/// Runs the future `make` builds until it returns; if it panics, the panic
/// is counted under `kind` and logged, and after a pause a fresh one takes
/// its place. For the long-lived tasks that serve every client of a shard
/// (maintenance, group ticks, follower fetchers): one bad input must not
/// stop them.
pub async fn supervised<F, Fut>(kind: crate::metrics::TaskKind, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut delay_ms = RESTART_DELAY_MS_MIN;
    // Bounded by the task's own end; each round is one run of it and a pause.
    loop {
        let started = std::time::Instant::now();
        if AssertUnwindSafe(make()).catch_unwind().await.is_ok() {
            return;
        }
        if started.elapsed() >= std::time::Duration::from_millis(RESTART_HEALTHY_RUN_MS) {
            delay_ms = RESTART_DELAY_MS_MIN;
        }
        crate::metrics::record_task_panic(kind);
        tracing::error!(
            task = kind.name(),
            delay_ms,
            "a shared task panicked; restarting it after a pause"
        );
        compio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        delay_ms = (delay_ms * 2).min(RESTART_DELAY_MS_MAX);
    }
}
