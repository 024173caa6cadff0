//! `sluice tune check`: reads the live host and compares it with what a
//! Kafka-style broker wants (the same settings as tuning/sysctl.conf and
//! tuning/limits.conf). Exits non-zero when something would break the broker.

use std::path::{Path, PathBuf};

use super::print_table;

#[derive(clap::Args)]
pub struct TuneArgs {
    #[command(subcommand)]
    command: TuneCommand,
}

#[derive(clap::Subcommand)]
enum TuneCommand {
    /// Compare this host's settings with the recommended ones.
    Check {
        /// The broker's data directory (log.dirs), whose filesystem is checked.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Advice,
    /// The broker cannot run (or cannot keep its promises) like this.
    Broken,
}

struct Check {
    setting: String,
    current: String,
    recommended: String,
    status: Status,
    why: &'static str,
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A sysctl compared as a number: `good` says whether the value is fine.
fn sysctl(name: &str, recommended: &str, why: &'static str, good: impl Fn(i64) -> bool) -> Check {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let current = read_trimmed(&path);
    let status = match current
        .as_deref()
        .and_then(|v| v.split(' ').next_back()?.parse::<i64>().ok())
    {
        Some(v) if good(v) => Status::Ok,
        Some(_) => Status::Advice,
        None => Status::Advice,
    };
    Check {
        setting: name.to_string(),
        current: current.unwrap_or_else(|| "unreadable".into()),
        recommended: recommended.to_string(),
        status,
        why,
    }
}

fn checks(data_dir: &Path) -> Vec<Check> {
    let mut out = vec![
        sysctl(
            "vm.swappiness",
            "1",
            "keep the page cache and the broker in memory",
            |v| v <= 10,
        ),
        sysctl(
            "vm.dirty_background_ratio",
            "5",
            "start writeback early and steadily",
            |v| v <= 10,
        ),
        sysctl("vm.dirty_ratio", "60", "never block producers on writeback", |v| {
            v >= 40
        }),
        sysctl("net.core.somaxconn", "4096", "bursts of reconnecting clients", |v| {
            v >= 4096
        }),
        sysctl(
            "net.ipv4.tcp_max_syn_backlog",
            "4096",
            "bursts of reconnecting clients",
            |v| v >= 4096,
        ),
        sysctl(
            "net.core.rmem_max",
            "16777216",
            "large receive windows for produce",
            |v| v >= 16_777_216,
        ),
        sysctl("net.core.wmem_max", "16777216", "large send windows for fetch", |v| {
            v >= 16_777_216
        }),
        sysctl(
            "net.ipv4.tcp_wmem",
            "4096 65536 16777216",
            "TCP autotuning up to 16 MiB",
            |v| v >= 16_777_216,
        ),
        sysctl("fs.file-max", "2097152", "files of every partition plus sockets", |v| {
            v >= 1_048_576
        }),
    ];
    out.push(io_uring_check());
    out.push(fd_limit_check());
    out.push(thp_check());
    out.push(governor_check());
    out.push(filesystem_check(data_dir));
    out
}

fn io_uring_check() -> Check {
    let disabled = read_trimmed("/proc/sys/kernel/io_uring_disabled").unwrap_or_else(|| "absent".into());
    // The real test: can this process set up a ring?
    let works = compio::runtime::Runtime::new().is_ok_and(|rt| format!("{:?}", rt.driver_type()).contains("IoUring"));
    Check {
        setting: "io_uring".into(),
        current: format!(
            "{} (kernel.io_uring_disabled = {disabled})",
            if works { "available" } else { "NOT available" }
        ),
        recommended: "available (io_uring_disabled = 0)".into(),
        status: if works { Status::Ok } else { Status::Broken },
        why: "every shard runs on its own io_uring",
    }
}

fn fd_limit_check() -> Check {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // The broker raises its soft limit to the hard one at start, so the hard limit is what counts.
    Check {
        setting: "open files (hard limit)".into(),
        current: format!("soft {} / hard {}", limit.rlim_cur, limit.rlim_max),
        recommended: "1048576".into(),
        status: if limit.rlim_max >= 1_048_576 {
            Status::Ok
        } else if limit.rlim_max >= 4096 {
            Status::Advice
        } else {
            Status::Broken
        },
        why: "segment and index files of every partition, one socket per client",
    }
}

fn thp_check() -> Check {
    let current = read_trimmed("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_else(|| "absent".into());
    let selected = current
        .split(' ')
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(['[', ']']).to_string())
        .unwrap_or_else(|| current.clone());
    Check {
        setting: "transparent huge pages".into(),
        current: selected.clone(),
        recommended: "madvise".into(),
        status: if selected == "always" {
            Status::Advice
        } else {
            Status::Ok
        },
        why: "`always` adds compaction stalls; the allocator asks where it helps",
    }
}

fn governor_check() -> Check {
    let current = read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor");
    Check {
        setting: "CPU frequency governor".into(),
        current: current.clone().unwrap_or_else(|| "none (no cpufreq: a VM?)".into()),
        recommended: "performance".into(),
        status: match current.as_deref() {
            None | Some("performance") => Status::Ok,
            Some(_) => Status::Advice,
        },
        why: "pinned shards wake for every completion; ramp-up costs latency",
    }
}

/// Filesystem magic numbers from statfs(2).
const TMPFS_MAGIC: i64 = 0x0102_1994;
const NETWORK_FS: &[(i64, &str)] = &[
    (0x6969, "nfs"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x6573_5546, "fuse"),
    (0x00C3_6400, "ceph"),
];

fn filesystem_check(data_dir: &Path) -> Check {
    // The directory may not exist yet: check the nearest existing ancestor.
    let existing = data_dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: statfs fills the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0;
    let magic = stat.f_type as i64;
    let (current, status, why) = if !ok {
        (
            "unreadable".to_string(),
            Status::Advice,
            "cannot tell where the data lives",
        )
    } else if magic == TMPFS_MAGIC {
        (
            "tmpfs".to_string(),
            Status::Broken,
            "tmpfs loses every partition at reboot",
        )
    } else if let Some((_, name)) = NETWORK_FS.iter().find(|(m, _)| *m == magic) {
        (
            name.to_string(),
            Status::Broken,
            "network filesystems break io_uring writes and sendfile",
        )
    } else {
        let name = match magic {
            0xEF53 => "ext4",
            0x5846_5342 => "xfs",
            0x9123_683E => "btrfs",
            _ => "local",
        };
        (name.to_string(), Status::Ok, "a local disk filesystem")
    };
    Check {
        setting: format!("filesystem of {}", data_dir.display()),
        current,
        recommended: "xfs or ext4 on a local disk".into(),
        status,
        why,
    }
}

pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    let TuneCommand::Check { data_dir } = args.command;
    let checks = checks(&data_dir);
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Advice => "change",
                Status::Broken => "BROKEN",
            };
            vec![
                c.setting.clone(),
                c.current.clone(),
                c.recommended.clone(),
                status.to_string(),
                c.why.to_string(),
            ]
        })
        .collect();
    print_table(&["SETTING", "CURRENT", "RECOMMENDED", "STATUS", "WHY"], &rows);
    let broken = checks.iter().filter(|c| c.status == Status::Broken).count();
    if broken > 0 {
        anyhow::bail!("{broken} setting(s) would break the broker");
    }
    println!("\nSee tuning/sysctl.conf and tuning/limits.conf to apply the recommendations.");
    Ok(())
}
