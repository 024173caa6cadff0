//! A temporary local Sluice for `bench` and `chaos`: this same binary running
//! `serve` on free loopback ports with fresh data dirs (one node, or a cluster
//! with `--brokers 3`), stopped and removed after (kept, with its logs, when
//! the caller names the directory). A node can be killed, restarted on the
//! same ports and data, paused and resumed. CPU time and RSS are read from
//! /proc (`Processes`), as for a broker the bench did not start (`--peer-pid`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalBroker {
    /// `None` while killed.
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
    /// Removed on drop unless the caller chose where it lives.
    remove_dir: bool,
    pub bootstrap: String,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One or more temporary local brokers: a single node, or a cluster whose
/// nodes are each a broker and a voter of the metadata quorum.
pub struct LocalCluster {
    pub brokers: Vec<LocalBroker>,
}

impl LocalCluster {
    pub fn start(count: usize) -> anyhow::Result<Self> {
        Self::start_in(count, None, &[])
    }

    /// As `start`, with node `i`'s data and log under `dir/node{i}` (kept
    /// after) when `dir` is given, and `extra_args` for every node's `serve`.
    pub fn start_in(count: usize, dir: Option<&Path>, extra_args: &[String]) -> anyhow::Result<Self> {
        let node_dir = |id: usize| -> anyhow::Result<(PathBuf, bool)> {
            Ok(match dir {
                Some(dir) => (dir.join(format!("node{id}")), false),
                None => (
                    std::env::temp_dir().join(format!("sluice-local-{}-{}", std::process::id(), free_port()?)),
                    true,
                ),
            })
        };
        if count <= 1 {
            let (dir, remove_dir) = node_dir(1)?;
            return Ok(Self {
                brokers: vec![LocalBroker::start(dir, remove_dir, extra_args.to_vec())?],
            });
        }
        let controller_ports: Vec<u16> = (0..count).map(|_| free_port()).collect::<Result<_, _>>()?;
        let quorum: Vec<String> = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect();
        let quorum = quorum.join(",");
        let brokers = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut args: Vec<String> = [
                    "--node-id",
                    &(i + 1).to_string(),
                    "--controller-listen",
                    &format!("127.0.0.1:{port}"),
                    "--controller-quorum",
                    &quorum,
                ]
                .map(String::from)
                .to_vec();
                args.extend_from_slice(extra_args);
                let (dir, remove_dir) = node_dir(i + 1)?;
                LocalBroker::start(dir, remove_dir, args)
            })
            .collect::<anyhow::Result<_>>()?;
        let cluster = Self { brokers };
        cluster.wait_until_registered(count)?;
        Ok(cluster)
    }

    /// Waits until every node has registered with the quorum (bounded by START_TIMEOUT).
    fn wait_until_registered(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        // Bounded by START_TIMEOUT.
        loop {
            let registered = crate::client::Client::connect(&self.bootstrap(), Duration::from_secs(5))
                .and_then(|mut c| crate::client::admin::metadata(&mut c, None))
                .map_or(0, |m| if m.controller_id.0 >= 0 { m.brokers.len() } else { 0 });
            if registered >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the local cluster did not form ({registered} of {count} brokers registered)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every broker's address, for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        let all: Vec<&str> = self.brokers.iter().map(|b| b.bootstrap.as_str()).collect();
        all.join(",")
    }

    /// The brokers' processes, to measure.
    pub fn processes(&self) -> Processes {
        Processes {
            pids: self.brokers.iter().filter_map(LocalBroker::pid).collect(),
        }
    }
}

/// Broker processes measured from /proc: the bench's own local brokers, or
/// another broker's (`--peer-pid`, e.g. Apache Kafka's JVMs).
pub struct Processes {
    pub pids: Vec<u32>,
}

impl Processes {
    /// utime + stime of every process and its threads, together, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids
            .iter()
            .map(|pid| crate::metrics::cpu_seconds_from_stat(&format!("/proc/{pid}/stat")))
            .sum()
    }

    /// The largest peak resident set size (VmHWM) of any process, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kb("VmHWM:") * 1024
    }

    /// The largest resident set size (VmRSS) of any process now, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_kb("VmRSS:") * 1024
    }

    fn status_kb(&self, field: &str) -> u64 {
        self.pids
            .iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let line = status.lines().find(|l| l.starts_with(field))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }
}

impl LocalBroker {
    fn start(dir: PathBuf, remove_dir: bool, args: Vec<String>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let bootstrap = format!("127.0.0.1:{}", free_port()?);
        let mut broker = Self {
            child: None,
            dir,
            args,
            remove_dir,
            bootstrap,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts `serve` on this node's ports and data, and waits (bounded)
    /// until it listens. The log is appended to, across restarts.
    fn spawn(&mut self) -> anyhow::Result<()> {
        assert!(self.child.is_none(), "the node is already running");
        let exe = std::env::current_exe().context("cannot find the sluice binary")?;
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                &self.bootstrap,
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(self.dir.join("data"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start a local broker")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        // Bounded by START_TIMEOUT.
        while TcpStream::connect(&self.bootstrap).is_err() {
            if Instant::now() > deadline {
                bail!("the local broker did not start; see {}", log_path.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// The running process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same ports and data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the running process.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused node would never see the SIGTERM.
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
