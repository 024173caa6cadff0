//! A temporary local Sluice for a benchmark: this same binary running `serve`
//! on free loopback ports with fresh data dirs (one node, or a cluster with
//! `--brokers 3`), stopped and removed after. CPU time and RSS are read from
//! /proc (`Processes`), as for a broker the bench did not start (`--peer-pid`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalBroker {
    child: Child,
    dir: PathBuf,
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
        if count <= 1 {
            return Ok(Self {
                brokers: vec![LocalBroker::start(&[])?],
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
                let node = (i + 1).to_string();
                let listen = format!("127.0.0.1:{port}");
                LocalBroker::start(&[
                    "--node-id",
                    &node,
                    "--controller-listen",
                    &listen,
                    "--controller-quorum",
                    &quorum,
                ])
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
            pids: self.brokers.iter().map(|b| b.child.id()).collect(),
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
    fn start(extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sluice-bench-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir)?;
        let bootstrap = format!("127.0.0.1:{}", free_port()?);
        let exe = std::env::current_exe().context("cannot find the sluice binary")?;
        let log = std::fs::File::create(dir.join("broker.log"))?;
        let child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                &bootstrap,
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start a local broker")?;
        let broker = Self { child, dir, bootstrap };
        let deadline = Instant::now() + START_TIMEOUT;
        // Bounded by START_TIMEOUT.
        while TcpStream::connect(&broker.bootstrap).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the local broker did not start; see {}",
                    broker.dir.join("broker.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
