//! A memory cgroup for one test, to make real OOM kills (needs root).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A memory cgroup made for one test; removed on drop even if the test
/// fails: every process in it is killed first.
pub struct Cgroup {
    pub dir: PathBuf,
    /// The path inside the hierarchy, as the kernel prints `task_memcg=`.
    pub path: String,
    pub v2: bool,
}

impl Cgroup {
    pub fn create(tag: &str) -> Cgroup {
        let name = format!("bgw-{tag}-{}", std::process::id());
        let has_memory = |root: &str| {
            std::fs::read_to_string(format!("{root}/cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|k| k == "memory"))
        };
        let (root, v2) = if has_memory("/sys/fs/cgroup") {
            ("/sys/fs/cgroup", true)
        } else if has_memory("/sys/fs/cgroup/unified") {
            ("/sys/fs/cgroup/unified", true)
        } else {
            ("/sys/fs/cgroup/memory", false)
        };
        if v2 {
            // Children only get the controller if the parent delegates it.
            let _ = std::fs::write(format!("{root}/cgroup.subtree_control"), "+memory");
        }
        let dir = Path::new(root).join(&name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("creating {} (needs root): {e}", dir.display()));
        Cgroup {
            dir,
            path: format!("/{name}"),
            v2,
        }
    }

    /// A cgroup inside this one, removed on drop like this one (drop it
    /// first).
    pub fn child(&self, name: &str) -> Cgroup {
        let dir = self.dir.join(name);
        if self.v2 {
            let _ = std::fs::write(self.file("cgroup.subtree_control"), "+memory");
        }
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Cgroup {
            dir,
            path: format!("{}/{name}", self.path),
            v2: self.v2,
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.file("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn usage(&self) -> u64 {
        let f = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        std::fs::read_to_string(self.file(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// OOM kills in this cgroup since it was made, by the kernel's own
    /// counter (`memory.events` on v2, `memory.oom_control` on v1, 4.13+):
    /// what systemd watches to apply a unit's `OOMPolicy`.
    pub fn oom_kills(&self) -> u64 {
        let f = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.file(f))
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.file(f).display()));
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .unwrap_or_else(|| panic!("no oom_kill in {f}: {text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// A shell snippet for a pool's master to run before it execs: it
    /// enters this cgroup. With [`oom_protect_conf`] as Gunicorn's config,
    /// each worker raises its own oom_score_adj to 1000 after fork, so the
    /// kernel's OOM killer takes a worker before the master (while a
    /// killed worker's memory is still charged, the master can be the
    /// largest task left). Lowering the master's to -1000 instead needs
    /// CAP_SYS_RESOURCE, which a sandboxed root may not have; raising a
    /// worker's needs nothing.
    pub fn enter_protected(&self) -> String {
        format!("echo $$ > {}", self.file("cgroup.procs").display())
    }

    pub fn set_limit(&self, bytes: u64) {
        let write = |f: &str, v: &str| {
            std::fs::write(self.file(f), v).unwrap_or_else(|e| panic!("writing {v} to {f}: {e}"))
        };
        if self.v2 {
            write("memory.max", &bytes.to_string());
            if self.file("memory.swap.max").exists() {
                write("memory.swap.max", "0");
            }
        } else {
            write("memory.limit_in_bytes", &bytes.to_string());
            // Without swap accounting the kill comes later, not never;
            // with it, memory+swap gets the same limit.
            if self.file("memory.memsw.limit_in_bytes").exists() {
                let _ = std::fs::write(self.file("memory.memsw.limit_in_bytes"), bytes.to_string());
            }
        }
    }
}

/// Gunicorn's config for pools in a cgroup: see [`Cgroup::enter_protected`].
pub fn oom_protect_conf() -> String {
    super::apps_dir()
        .join("oom_protect_master.py")
        .display()
        .to_string()
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The last charges leave the cgroup a moment after its processes.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("could not remove cgroup {}", self.dir.display());
    }
}
