//! A temporary local Sluice for `bench` and `chaos`: this same binary running
//! `serve` on free loopback ports with fresh data dirs (one node, or a cluster
//! with `--brokers 3`), or Apache Kafka from its jars as the peer that
//! `chaos --peer kafka` puts under the same faults, stopped and removed
//! after (kept, with its logs, when the caller names the directory). A node can be killed, restarted on the
//! same ports and data, paused and resumed, stopped gracefully; with a disk
//! of its own (`Sandbox::disk_mb`, a loop-mounted ext4 file), its data dir
//! can be filled up and freed again. CPU time and RSS are read from
//! /proc (`Processes`), as for a broker the bench did not start (`--peer-pid`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a node listens, and the network namespace it runs in, if any.
struct Place {
    host: String,
    netns: Option<String>,
}

impl Place {
    fn loopback() -> Self {
        Self {
            host: "127.0.0.1".into(),
            netns: None,
        }
    }
}

/// What a node runs.
#[derive(Debug, Clone)]
pub enum Program {
    /// This binary's `serve`, with these arguments besides its listener and data dir.
    Sluice {
        args: Vec<String>,
    },
    Kafka(KafkaNode),
}

/// An Apache Kafka node in KRaft combined mode (broker and controller).
#[derive(Debug, Clone)]
pub struct KafkaNode {
    /// Kafka's jars in `lib/` and a `log4j2.properties`, as `perf/peer-kafka.sh classpath` resolves them.
    pub jars: PathBuf,
    pub node_id: usize,
    pub controller_listen: String,
    /// `controller.quorum.voters`.
    pub voters: String,
    /// More `server.properties` lines, appended.
    pub properties: String,
}

/// Kafka formats every node of a cluster with one id; each campaign's nodes are new.
const KAFKA_CLUSTER_ID: &str = "c2x1aWNlLWNoYW9zLWthZg";
/// A JVM with Kafka's jars takes longer to listen than `serve`.
const KAFKA_START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct LocalBroker {
    /// `None` while killed.
    child: Option<Child>,
    netns: Option<String>,
    dir: PathBuf,
    program: Program,
    /// Removed on drop unless the caller chose where it lives.
    remove_dir: bool,
    pub bootstrap: String,
    /// Unmounted when the broker drops, after its process is gone.
    disk: Option<Disk>,
}

/// What a local cluster's nodes run inside, beyond plain loopback processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sandbox {
    /// Each node in a network namespace of its own (root only), so that
    /// `Namespaces::cut` can part them.
    pub namespaces: bool,
    /// Each node's data dir on an ext4 filesystem of this many MiB of its
    /// own, loop-mounted (root only), so that it can be filled.
    pub disk_mb: Option<u64>,
}

/// Stopping gracefully waits this long before it kills.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The file that fills a node's disk.
const BALLAST_FILE: &str = "chaos-ballast";

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One or more temporary local brokers: a single node, or a cluster whose
/// nodes are each a broker and a voter of the metadata quorum.
pub struct LocalCluster {
    pub brokers: Vec<LocalBroker>,
    /// With `start_in(.., namespaces: true)`: dropped after the brokers.
    pub namespaces: Option<Namespaces>,
}

impl LocalCluster {
    pub fn start(count: usize) -> anyhow::Result<Self> {
        Self::start_in(count, None, &[], Sandbox::default())
    }

    /// As `start`, with node `i`'s data and log under `dir/node{i}` (kept
    /// after) when `dir` is given, `extra_args` for every node's `serve`,
    /// and the nodes in `sandbox` (namespaces apply to a cluster only).
    pub fn start_in(count: usize, dir: Option<&Path>, extra_args: &[String], sandbox: Sandbox) -> anyhow::Result<Self> {
        Self::start_program(count, dir, extra_args, None, sandbox)
    }

    /// A cluster of `count` Apache Kafka nodes from `jars`, each a broker
    /// and a voter, with `properties` appended to every node's
    /// `server.properties`; otherwise as `start_in`.
    pub fn start_kafka_in(
        count: usize,
        dir: Option<&Path>,
        jars: &Path,
        properties: &str,
        sandbox: Sandbox,
    ) -> anyhow::Result<Self> {
        if !jars.join("lib").is_dir() {
            bail!(
                "no Kafka jars in {}/lib: `perf/peer-kafka.sh classpath` resolves them",
                jars.display()
            );
        }
        if count < 2 {
            bail!("a local Kafka is a cluster of two nodes or more");
        }
        let kafka = (jars.to_path_buf(), properties.to_string());
        Self::start_program(count, dir, &[], Some(kafka), sandbox)
    }

    fn start_program(
        count: usize,
        dir: Option<&Path>,
        extra_args: &[String],
        kafka: Option<(PathBuf, String)>,
        sandbox: Sandbox,
    ) -> anyhow::Result<Self> {
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
            let place = Place::loopback();
            let program = Program::Sluice {
                args: extra_args.to_vec(),
            };
            let broker = LocalBroker::start(dir, remove_dir, place, program, sandbox.disk_mb)?;
            broker.wait_listening()?;
            return Ok(Self {
                brokers: vec![broker],
                namespaces: None,
            });
        }
        let namespaces = sandbox.namespaces.then(|| Namespaces::create(count)).transpose()?;
        let place = |id: usize| match &namespaces {
            Some(n) => Place {
                host: n.ip(id),
                netns: Some(n.name(id)),
            },
            None => Place::loopback(),
        };
        let controller_ports: Vec<u16> = (0..count).map(|_| free_port()).collect::<Result<_, _>>()?;
        let quorum: Vec<String> = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@{}:{port}", i + 1, place(i + 1).host))
            .collect();
        let quorum = quorum.join(",");
        let brokers = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let controller_listen = format!("{}:{port}", place(i + 1).host);
                let program = match &kafka {
                    Some((jars, properties)) => Program::Kafka(KafkaNode {
                        jars: jars.clone(),
                        node_id: i + 1,
                        controller_listen,
                        voters: quorum.clone(),
                        properties: properties.clone(),
                    }),
                    None => {
                        let mut args: Vec<String> = [
                            "--node-id",
                            &(i + 1).to_string(),
                            "--controller-listen",
                            &controller_listen,
                            "--controller-quorum",
                            &quorum,
                        ]
                        .map(String::from)
                        .to_vec();
                        args.extend_from_slice(extra_args);
                        Program::Sluice { args }
                    }
                };
                let (dir, remove_dir) = node_dir(i + 1)?;
                LocalBroker::start(dir, remove_dir, place(i + 1), program, sandbox.disk_mb)
            })
            .collect::<anyhow::Result<_>>()?;
        let cluster = Self { brokers, namespaces };
        for broker in &cluster.brokers {
            broker.wait_listening()?;
        }
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
    fn start(
        dir: PathBuf,
        remove_dir: bool,
        place: Place,
        program: Program,
        disk_mb: Option<u64>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let bootstrap = format!("{}:{}", place.host, free_port()?);
        let disk = disk_mb.map(|mb| Disk::create(&dir, mb)).transpose()?;
        let mut broker = Self {
            child: None,
            netns: place.netns,
            dir,
            program,
            remove_dir,
            bootstrap,
            disk,
        };
        if let Program::Kafka(node) = &broker.program {
            broker.format_kafka(node)?;
        }
        broker.launch()?;
        Ok(broker)
    }

    /// Writes a Kafka node's `server.properties` and formats its data dir.
    fn format_kafka(&self, node: &KafkaNode) -> anyhow::Result<()> {
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id={}\n\
             controller.quorum.voters={}\n\
             listeners=PLAINTEXT://{},CONTROLLER://{}\n\
             advertised.listeners=PLAINTEXT://{}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=PLAINTEXT\n\
             log.dirs={}\n{}\n",
            node.node_id,
            node.voters,
            self.bootstrap,
            node.controller_listen,
            self.bootstrap,
            self.data_dir().display(),
            node.properties
        );
        let path = self.dir.join("server.properties");
        std::fs::write(&path, properties)?;
        let out = self
            .java(node)
            .args(["kafka.tools.StorageTool", "format"])
            .arg(format!("--cluster-id={KAFKA_CLUSTER_ID}"))
            .arg("-c")
            .arg(&path)
            .output()
            .context("cannot run java (Kafka's StorageTool)")?;
        if !out.status.success() {
            bail!(
                "formatting a Kafka node: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(())
    }

    /// `java` with Kafka's jars and logging, heap and collector as `perf/peer-kafka.sh` gives them.
    fn java(&self, node: &KafkaNode) -> Command {
        let mut java = Command::new("java");
        java.args(["-Xms1G", "-Xmx1G", "-XX:+UseG1GC", "-Djava.awt.headless=true"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                node.jars.join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", node.jars.join("lib").display()));
        java
    }

    /// The command that runs the node: `serve` on its ports and data, or Kafka on its properties.
    fn command(&self) -> anyhow::Result<Command> {
        let mut command = match &self.program {
            Program::Sluice { args } => {
                let exe = std::env::current_exe().context("cannot find the sluice binary")?;
                let mut c = Command::new(exe);
                c.args([
                    "serve",
                    "--listen",
                    &self.bootstrap,
                    "--metrics-listen",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(self.data_dir())
                .args(args);
                c
            }
            Program::Kafka(node) => {
                let mut c = self.java(node);
                c.arg("kafka.Kafka").arg(self.dir.join("server.properties"));
                c
            }
        };
        // `ip netns exec` enters the namespace and execs: the child's pid is the broker's.
        if let Some(netns) = &self.netns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns])
                .arg(command.get_program())
                .args(command.get_args());
            command = c;
        }
        Ok(command)
    }

    /// `launch`, then `wait_listening`.
    fn spawn(&mut self) -> anyhow::Result<()> {
        self.launch()?;
        self.wait_listening()
    }

    /// Starts the node on its ports and data. The log is appended to, across restarts.
    fn launch(&mut self) -> anyhow::Result<()> {
        assert!(self.child.is_none(), "the node is already running");
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        // Kafka logs to stdout, `serve` to stderr.
        let child = self
            .command()?
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a local broker")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits (bounded) until the node listens for clients. A Kafka node
    /// opens its listener only once the quorum has formed, so a cluster's
    /// nodes are all launched before any is waited for.
    fn wait_listening(&self) -> anyhow::Result<()> {
        let timeout = match self.program {
            Program::Sluice { .. } => START_TIMEOUT,
            Program::Kafka(_) => KAFKA_START_TIMEOUT,
        };
        let deadline = Instant::now() + timeout;
        // Bounded by the timeout.
        while TcpStream::connect(&self.bootstrap).is_err() {
            if Instant::now() > deadline {
                bail!("the local broker did not start; see {}", self.log_path().display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// On the node's own disk when it has one: below its mount point, as
    /// ext4's `lost+found` is no partition directory.
    pub fn data_dir(&self) -> PathBuf {
        match &self.disk {
            Some(disk) => disk.mount.join("data"),
            None => self.dir.join("data"),
        }
    }

    /// Fills the node's own disk with a ballast file until no block is left.
    /// Returns the bytes written.
    pub fn fill_disk(&self) -> anyhow::Result<u64> {
        use std::io::Write;
        const ROUNDS_MAX: usize = 8;
        let disk = self
            .disk
            .as_ref()
            .context("filling a disk needs --disk (Sandbox::disk_mb)")?;
        let mut file = std::fs::File::create(disk.mount.join(BALLAST_FILE))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        // ext4 holds blocks back for the extents of dirty pages and gives them
        // back at writeback: write, fsync, and write again until a round after
        // an fsync finds no block at all.
        for _ in 0..ROUNDS_MAX {
            let mut round = 0u64;
            let mut size = chunk.len();
            // Bounded by the disk's size: every round writes, or halves the size down to one block.
            while size >= 4096 {
                match file.write(&chunk[..size]) {
                    Ok(0) => break,
                    Ok(n) => round += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => size /= 2,
                    Err(e) => return Err(e.into()),
                }
            }
            let _ = file.sync_all();
            written += round;
            if round == 0 {
                break;
            }
        }
        Ok(written)
    }

    /// Removes what `fill_disk` wrote.
    pub fn free_disk(&self) -> anyhow::Result<()> {
        let disk = self.disk.as_ref().context("freeing a disk needs --disk")?;
        std::fs::remove_file(disk.mount.join(BALLAST_FILE))?;
        Ok(())
    }

    /// Throttles the node's own disk to a trickle (`slow`), or lifts the
    /// throttle. The limits are blk-throttle's, set in cgroup v1's root blkio
    /// group, so they hold for every read and write of the device, the
    /// kernel's writeback of the broker's unsynced appends included.
    pub fn slow_disk(&self, slow: bool) -> anyhow::Result<()> {
        let disk = self
            .disk
            .as_ref()
            .context("slowing a disk needs --disk (Sandbox::disk_mb)")?;
        for (setting, limit) in SLOW_DISK_LIMITS {
            let path = Path::new(BLKIO_DIR).join(format!("blkio.throttle.{setting}"));
            let limit = if slow { limit } else { 0 };
            std::fs::write(&path, format!("{} {limit}", disk.device)).with_context(|| {
                format!(
                    "cannot write {} (slow needs cgroup v1's blkio, and root)",
                    path.display()
                )
            })?;
        }
        Ok(())
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

    /// SIGTERM, a clean shutdown, and reaps the process; killed after STOP_TIMEOUT.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Bounded by STOP_TIMEOUT.
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
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

/// Where cgroup v1 keeps the root blkio group's throttles.
const BLKIO_DIR: &str = "/sys/fs/cgroup/blkio";
/// A slow disk: 64 KiB and 10 operations a second each way (0 lifts a limit).
const SLOW_DISK_LIMITS: [(&str, u64); 4] = [
    ("write_bps_device", 64 << 10),
    ("read_bps_device", 64 << 10),
    ("write_iops_device", 10),
    ("read_iops_device", 10),
];

/// A node's own ext4 filesystem: an image file under its directory, mounted
/// through a loop device at `mount`.
struct Disk {
    mount: PathBuf,
    /// The loop device's `major:minor`, which blk-throttle names it by.
    device: String,
}

impl Disk {
    fn create(dir: &Path, mb: u64) -> anyhow::Result<Self> {
        let image = dir.join("disk.img");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount)?;
        // Sparse: only what the node writes takes room on the host.
        std::fs::File::create(&image)?.set_len(mb << 20)?;
        run("mkfs.ext4", &["-q", "-F", "-m", "0", &image.display().to_string()])?;
        run(
            "mount",
            &["-o", "loop", &image.display().to_string(), &mount.display().to_string()],
        )
        .context("mounting a node's disk needs root")?;
        let device = mounted_device(&mount)?;
        Ok(Self { mount, device })
    }
}

/// The `major:minor` of the device mounted at `mount`, from /proc/self/mountinfo
/// (its third field; the fifth is the mount point).
fn mounted_device(mount: &Path) -> anyhow::Result<String> {
    let mount = mount.canonicalize()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    mountinfo
        .lines()
        .rev() // the latest mount at a point is the one in effect
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .find(|fields| fields.len() > 4 && Path::new(fields[4]) == mount)
        .map(|fields| fields[2].to_string())
        .with_context(|| format!("{} is not in /proc/self/mountinfo", mount.display()))
}

impl Drop for Disk {
    fn drop(&mut self) {
        // A campaign cut short may leave it slow: the next loop device would inherit the limits.
        for (setting, _) in SLOW_DISK_LIMITS {
            let _ = std::fs::write(
                Path::new(BLKIO_DIR).join(format!("blkio.throttle.{setting}")),
                format!("{} 0", self.device),
            );
        }
        let _ = run("umount", &["-l", &self.mount.display().to_string()]);
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A bridge in the caller's namespace and, per node, a network namespace
/// joined to it by a veth pair, with address `ip(id)` on a /24 of its own.
/// Clients (this process) reach every node through the bridge; `cut` drops
/// traffic between nodes with nftables inside a node's namespace.
pub struct Namespaces {
    tag: String,
    subnet: String,
    count: usize,
}

/// The nftables table `cut` fills; `heal` flushes it.
const CUT_TABLE: &str = "sluice_chaos";

impl Namespaces {
    fn create(count: usize) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let namespaces = Self {
            tag: format!("{:04x}", pid & 0xffff),
            subnet: format!("10.{}.{}", 100 + (pid >> 8) % 100, pid % 256),
            count,
        };
        let bridge = namespaces.bridge();
        run_ip(&["link", "add", &bridge, "type", "bridge"])?;
        run_ip(&["addr", "add", &format!("{}.254/24", namespaces.subnet), "dev", &bridge])?;
        run_ip(&["link", "set", &bridge, "up"])?;
        for id in 1..=count {
            let (ns, outside, inside) = (namespaces.name(id), namespaces.veth(id, 'v'), namespaces.veth(id, 'p'));
            run_ip(&["netns", "add", &ns])?;
            run_ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            run_ip(&["link", "set", &inside, "netns", &ns])?;
            run_ip(&["link", "set", &outside, "master", &bridge, "up"])?;
            run_ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", namespaces.ip(id)),
                "dev",
                &inside,
            ])?;
            run_ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            run_ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(namespaces)
    }

    pub fn name(&self, id: usize) -> String {
        format!("sluice-{}-{id}", self.tag)
    }

    pub fn ip(&self, id: usize) -> String {
        format!("{}.{id}", self.subnet)
    }

    fn bridge(&self) -> String {
        format!("slbr{}", self.tag)
    }

    fn veth(&self, id: usize, end: char) -> String {
        format!("sl{}{end}{id}", self.tag)
    }

    /// Drops every packet between node `id` and each of `peers`, both ways,
    /// from inside `id`'s namespace; clients keep reaching it.
    pub fn cut(&self, id: usize, peers: &[usize]) -> anyhow::Result<()> {
        let mut script = format!(
            "add table inet {CUT_TABLE}\n\
             add chain inet {CUT_TABLE} input {{ type filter hook input priority 0 ; }}\n\
             add chain inet {CUT_TABLE} output {{ type filter hook output priority 0 ; }}\n"
        );
        for peer in peers {
            let ip = self.ip(*peer);
            script += &format!("add rule inet {CUT_TABLE} input ip saddr {ip} drop\n");
            script += &format!("add rule inet {CUT_TABLE} output ip daddr {ip} drop\n");
        }
        self.nft(id, &script)
    }

    /// Undoes every `cut` made in node `id`'s namespace.
    pub fn heal(&self, id: usize) -> anyhow::Result<()> {
        self.nft(
            id,
            &format!("add table inet {CUT_TABLE}\ndelete table inet {CUT_TABLE}\n"),
        )
    }

    fn nft(&self, id: usize, script: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name(id), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run nft (Debian's nftables)")?;
        child.stdin.take().expect("piped").write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nft in {}: {}", self.name(id), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for id in 1..=self.count {
            let _ = run_ip(&["netns", "del", &self.name(id)]);
        }
        let _ = run_ip(&["link", "del", &self.bridge()]);
    }
}

fn run_ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args).map_err(|e| anyhow::anyhow!("{e:#} (iproute2; network namespaces need root)"))
}
