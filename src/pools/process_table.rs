//! Looking processes up for one pool cycle: a pool's master (by pidfile,
//! command-line regex or Gunicorn discovery) and its workers (from the
//! master's `children` files where the kernel has them, else from one scan
//! of the process table, built at most once a cycle and only when needed).

use std::collections::HashMap;

use crate::config::{Matcher, Server};

use super::discover::{self, GunicornRole};
use super::proc::{ProcEntry, ProcId, ProcRoot};
use super::servers::{self, Title};

/// How a tracked pool finds its master.
#[derive(Debug, Clone)]
pub enum Finder {
    Config(Matcher),
    /// A discovered Gunicorn pool, found again by its derived name.
    Gunicorn,
    /// A discovered pool of another server (uWSGI, php-fpm, Puma, Unicorn),
    /// found again by its derived name.
    Preset(Server),
}

/// The whole process table, indexed. Reading it costs one /proc/PID/stat
/// per process on the host (about 30 ms for 2,000 processes), so a cycle
/// builds it only when it must.
struct Table {
    entries: Vec<ProcEntry>,
    by_pid: HashMap<i32, usize>,
    children: HashMap<i32, Vec<ProcId>>,
}

impl Table {
    fn new(entries: Vec<ProcEntry>) -> Table {
        let mut by_pid = HashMap::with_capacity(entries.len());
        let mut children: HashMap<i32, Vec<ProcId>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_pid.insert(e.id.pid, i);
            children.entry(e.ppid).or_default().push(e.id);
        }
        Table {
            entries,
            by_pid,
            children,
        }
    }

    fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.by_pid.get(&pid).map(|i| &self.entries[*i])
    }
}

/// Everything one cycle needs to look processes up.
pub struct Lookup<'a> {
    pub root: &'a ProcRoot,
    table: Option<Table>,
    /// Whether the kernel has /proc/PID/task/TID/children; when it has,
    /// a pool with a known master costs O(its workers), not O(host).
    children_files: &'a mut Option<bool>,
    pub scan_errors: u64,
    own_pid: i32,
    cmdlines: HashMap<i32, Option<String>>,
    /// Whether a scan for Gunicorn masters may run this cycle; it reads
    /// every candidate's cmdline, so it is rate-limited.
    pub discovery_due: bool,
    gunicorn: Option<Vec<(String, ProcId)>>,
    presets: Vec<(Server, Vec<(String, ProcId)>)>,
}

impl<'a> Lookup<'a> {
    pub fn new(root: &'a ProcRoot, children_files: &'a mut Option<bool>) -> Lookup<'a> {
        Lookup {
            root,
            table: None,
            children_files,
            scan_errors: 0,
            own_pid: std::process::id() as i32,
            cmdlines: HashMap::new(),
            discovery_due: false,
            gunicorn: None,
            presets: Vec::new(),
        }
    }

    fn table(&mut self) -> &Table {
        if self.table.is_none() {
            let entries = match self.root.scan() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %self.root.path().display(), error = %e, "cannot list processes");
                    self.scan_errors += 1;
                    Vec::new()
                }
            };
            self.table = Some(Table::new(entries));
        }
        self.table.as_ref().expect("just built")
    }

    /// A process's command line, read at most once a cycle.
    pub fn cmdline(&mut self, pid: i32) -> Option<String> {
        let root = self.root;
        self.cmdlines
            .entry(pid)
            .or_insert_with(|| root.cmdline(pid))
            .clone()
    }

    /// The identity of a live (not zombie) process.
    fn identity(&self, pid: i32) -> Option<ProcId> {
        match &self.table {
            Some(t) => t.get(pid).map(|e| e.id),
            None => self.root.identity(pid),
        }
    }

    fn alive(&self, id: ProcId) -> bool {
        self.identity(id.pid) == Some(id)
    }

    /// The master's children that started after it (an older "child" is a
    /// reused pid).
    pub fn children(&mut self, m: ProcId) -> Vec<ProcId> {
        if self.table.is_none() && *self.children_files != Some(false) {
            match self.root.children(m.pid) {
                Some(pids) => {
                    *self.children_files = Some(true);
                    return pids
                        .into_iter()
                        .filter_map(|p| self.root.identity(p))
                        .filter(|c| c.starttime >= m.starttime)
                        .collect();
                }
                // Only a kernel without the files is remembered; a master
                // that died meanwhile says nothing about the kernel.
                None if self.alive(m) => *self.children_files = Some(false),
                None => return Vec::new(),
            }
        }
        self.table()
            .children
            .get(&m.pid)
            .map(|c| {
                c.iter()
                    .filter(|c| c.starttime >= m.starttime)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Gunicorn masters on the host, keyed by derived pool name; computed
    /// at most once a cycle.
    pub fn gunicorn_masters(&mut self) -> Vec<(String, ProcId)> {
        if let Some(g) = &self.gunicorn {
            return g.clone();
        }
        let g = self.scan_gunicorn();
        self.gunicorn = Some(g.clone());
        g
    }

    fn scan_gunicorn(&mut self) -> Vec<(String, ProcId)> {
        let own = self.own_pid;
        // The comm prefilter spares reading the cmdline of every process.
        let candidates: Vec<(ProcId, i32)> = self
            .table()
            .entries
            .iter()
            .filter(|e| e.id.pid != own && discover::may_be_gunicorn(e.comm()))
            .map(|e| (e.id, e.ppid))
            .collect();
        let mut roles: HashMap<i32, GunicornRole> = HashMap::new();
        for (id, _) in &candidates {
            if let Some(role) = self
                .cmdline(id.pid)
                .and_then(|c| discover::gunicorn_role(&c))
            {
                roles.insert(id.pid, role);
            }
        }
        let masters: Vec<ProcId> = candidates
            .iter()
            .filter(|(id, ppid)| match roles.get(&id.pid) {
                Some(GunicornRole::Master) => true,
                // A plain command line is the master only when its parent
                // is not Gunicorn too.
                Some(GunicornRole::Plain) => !roles.contains_key(ppid),
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        self.named(masters, discover::gunicorn_pool_name)
    }

    /// Masters of `server` on the host (by its preset's titles), keyed by
    /// derived pool name; computed at most once a cycle.
    pub fn preset_masters(&mut self, server: Server) -> Vec<(String, ProcId)> {
        if let Some((_, m)) = self.presets.iter().find(|(s, _)| *s == server) {
            return m.clone();
        }
        let m = self.scan_preset(server);
        self.presets.push((server, m.clone()));
        m
    }

    fn scan_preset(&mut self, server: Server) -> Vec<(String, ProcId)> {
        let Some(preset) = servers::preset(server) else {
            return Vec::new();
        };
        let own = self.own_pid;
        let candidates: Vec<(ProcId, i32)> = self
            .table()
            .entries
            .iter()
            .filter(|e| e.id.pid != own && (preset.may_be)(e.comm()))
            .map(|e| (e.id, e.ppid))
            .collect();
        let mut titles: HashMap<i32, Title> = HashMap::new();
        for (id, _) in &candidates {
            if let Some(t) = self.cmdline(id.pid).and_then(|c| (preset.title)(&c)) {
                titles.insert(id.pid, t);
            }
        }
        let masters: Vec<ProcId> = candidates
            .iter()
            .filter(|(id, ppid)| match titles.get(&id.pid) {
                // A new master forked by a master (a hot restart) is not a
                // pool of its own.
                Some(Title::Master) => titles.get(ppid) != Some(&Title::Master),
                Some(Title::Plain) => !titles.contains_key(ppid),
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        self.named(masters, preset.pool_name)
    }

    /// Masters by pool name, oldest first: the name `pool_name` derives
    /// from the master's command line, then NAME#2, NAME#3 for later
    /// masters of the same name. A master gone before its command line
    /// was read is left out.
    fn named(
        &mut self,
        mut masters: Vec<ProcId>,
        pool_name: impl Fn(&str) -> String,
    ) -> Vec<(String, ProcId)> {
        masters.sort_by_key(|id| (id.starttime, id.pid));
        let mut out: Vec<(String, ProcId)> = Vec::new();
        for id in masters {
            let Some(cmd) = self.cmdline(id.pid) else {
                continue;
            };
            let base = pool_name(&cmd);
            let mut name = base.clone();
            let mut n = 2;
            while out.iter().any(|(o, _)| *o == name) {
                name = format!("{base}#{n}");
                n += 1;
            }
            out.push((name, id));
        }
        out
    }

    /// The master of pool `name`, found by `finder`; `current` is the
    /// master seen last cycle.
    pub fn find_master(
        &mut self,
        finder: &Finder,
        name: &str,
        current: Option<ProcId>,
    ) -> Option<ProcId> {
        // Keep a live master without re-matching: cheap, and stable.
        if let Some(m) = current {
            if self.alive(m) && !matches!(finder, Finder::Config(Matcher::Pidfile(_))) {
                return Some(m);
            }
        }
        match finder {
            Finder::Config(Matcher::Pidfile(path)) => {
                let text = std::fs::read_to_string(path).ok()?;
                let pid = discover::parse_pidfile(&text)?;
                self.identity(pid)
            }
            Finder::Config(Matcher::Cmdline(re)) => {
                let own = self.own_pid;
                self.table();
                let table = self.table.take().expect("built above");
                let matches =
                    discover::match_cmdlines(&table.entries, re, own, |pid| self.cmdline(pid));
                let m = discover::topmost_matching(&table.entries, &matches)
                    .into_iter()
                    .next();
                self.table = Some(table);
                m
            }
            Finder::Gunicorn => {
                if !self.discovery_due {
                    return None;
                }
                self.gunicorn_masters()
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, id)| id)
            }
            Finder::Preset(server) => {
                if !self.discovery_due {
                    return None;
                }
                self.preset_masters(*server)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, id)| id)
            }
        }
    }
}
