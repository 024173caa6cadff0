//! A temporary local Sluice for a benchmark: this same binary running `serve`
//! on a free loopback port with a fresh data dir, stopped and removed after.
//! Its CPU time and peak RSS are read from /proc.

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

impl LocalBroker {
    pub fn start() -> anyhow::Result<Self> {
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

    fn proc_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).ok()
    }

    /// utime + stime of the broker and all its threads, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        crate::metrics::cpu_seconds_from_stat(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Peak resident set size (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_file("status")
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kb * 1024)
            })
            .unwrap_or(0)
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
