//! Restore side: `cgroup.img` read and checked, `--cgroup-root` applied, directories created
//! or reused per [`Mode`] (special properties right at creation), tasks moved into their
//! sets as they are forked, the other properties written once every task is in place, and
//! the directories created removed again when the restore fails.

use std::os::unix::fs::{PermissionsExt, chown};
use std::time::{Duration, Instant};

use criu_proto::images::{CgSetEntry, CgroupDirEntry, CgroupEntry, CgroupPerms, CgroupPropEntry};

use super::dump::contains;
use super::fs::{Hierarchy, is_v2};
use super::{CgroupError, CgroupOptions, Mode, has_dotdot, props};

/// The cgroups of one restore (see the module doc).
#[derive(Debug)]
pub struct CgroupRestore {
    opts: CgroupOptions,
    /// `inventory.root_cg_set`: criu's own set at dump, where the root stays if it was there.
    root_set: u32,
    entry: CgroupEntry,
    hier: Vec<Option<Hierarchy>>,
    /// Directories made here (controller, path), in creation order.
    created: Vec<(usize, String)>,
    /// Properties written once every task is in place (controller, directory, property).
    later: Vec<(usize, String, CgroupPropEntry)>,
    done: bool,
}

fn bad(entry: impl Into<Option<String>>, reason: impl Into<String>) -> CgroupError {
    CgroupError::BadImage {
        entry: entry.into(),
        reason: reason.into(),
    }
}

/// Refuses names that would leave the hierarchy or cannot be paths.
fn check_dirs(ctl: usize, dirs: &[CgroupDirEntry], head: bool) -> Result<(), CgroupError> {
    for d in dirs {
        let n = &d.dir_name;
        if has_dotdot(n) || n.contains('\0') || (!head && (n.contains('/') || n.is_empty())) {
            return Err(bad(
                format!("controller {ctl}"),
                format!("directory name {n:?} is not a cgroup directory name"),
            ));
        }
        check_dirs(ctl, &d.children, false)?;
    }
    Ok(())
}

/// Checks the entry: controllers named, paths inside their hierarchies, every set a task
/// refers to present (`tasks`: pid and its set).
pub fn check(entry: &CgroupEntry, root_set: u32, tasks: &[(i32, u32)]) -> Result<(), CgroupError> {
    for (i, c) in entry.controllers.iter().enumerate() {
        if c.cnames.is_empty() {
            return Err(bad(format!("controller {i}"), "no controller name"));
        }
        check_dirs(i, &c.dirs, true)?;
    }
    for s in &entry.sets {
        for m in &s.ctls {
            if !m.path.starts_with('/') || has_dotdot(&m.path) || m.path.contains('\0') {
                return Err(bad(
                    format!("set {}", s.id),
                    format!(
                        "path {:?} of {:?} is not inside its hierarchy",
                        m.path, m.name
                    ),
                ));
            }
            if !entry
                .controllers
                .iter()
                .any(|c| contains(&c.cnames, &m.name))
            {
                return Err(bad(
                    format!("set {}", s.id),
                    format!("no controller entry for {:?}", m.name),
                ));
            }
        }
    }
    for &(pid, set) in tasks {
        if set != root_set && !entry.sets.iter().any(|s| s.id == set) {
            return Err(bad(
                None,
                format!("task {pid} is in cgroup set {set}, which is not in the image"),
            ));
        }
    }
    Ok(())
}

/// `--cgroup-root`: the heads of each remapped hierarchy and the set paths below them move
/// under the new root (CRIU's `rewrite_cgroup_roots`).
pub fn rewrite_roots(entry: &mut CgroupEntry, opts: &CgroupOptions) {
    let CgroupEntry { sets, controllers } = entry;
    for c in controllers.iter_mut() {
        let Some(newroot) = opts.root_for(&c.cnames) else {
            continue;
        };
        let newroot = newroot.trim_end_matches('/');
        for head in &mut c.dirs {
            let dir = head.dir_name.trim_matches('/').to_string();
            let mut moved = false;
            for m in sets.iter_mut().flat_map(|s| s.ctls.iter_mut()) {
                if !contains(&c.cnames, &m.name) {
                    continue;
                }
                let rest = if dir.is_empty() {
                    Some(if m.path == "/" { "" } else { m.path.as_str() })
                } else {
                    m.path
                        .strip_prefix('/')
                        .and_then(|p| p.strip_prefix(dir.as_str()))
                        .filter(|r| r.is_empty() || r.starts_with('/'))
                };
                if let Some(rest) = rest {
                    let p = format!("{newroot}{rest}");
                    m.path = if p.is_empty() { "/".into() } else { p };
                    moved = true;
                }
            }
            if moved {
                head.dir_name = newroot.trim_start_matches('/').to_string();
            }
        }
    }
}

fn join(parent: &str, name: &str) -> String {
    let name = name.trim_matches('/');
    match (parent.is_empty(), name.is_empty()) {
        (_, true) => parent.to_string(),
        (true, false) => name.to_string(),
        (false, false) => format!("{parent}/{name}"),
    }
}

impl CgroupRestore {
    /// Reads the entry (None when no cgroup.img or nothing to do), checks and remaps it.
    pub fn new(
        entry: Option<CgroupEntry>,
        root_set: u32,
        tasks: &[(i32, u32)],
        opts: &CgroupOptions,
    ) -> Result<Option<CgroupRestore>, CgroupError> {
        if opts.mode == Mode::Ignore {
            return Ok(None);
        }
        let Some(mut entry) = entry else {
            if let Some(&(pid, set)) = tasks.iter().find(|&&(_, s)| s != root_set) {
                return Err(bad(
                    None,
                    format!(
                        "task {pid} is in cgroup set {set} but the image directory has no cgroup.img"
                    ),
                ));
            }
            return Ok(None);
        };
        check(&entry, root_set, tasks)?;
        rewrite_roots(&mut entry, opts);
        let n = entry.controllers.len();
        Ok(Some(CgroupRestore {
            opts: opts.clone(),
            root_set,
            entry,
            hier: (0..n).map(|_| None).collect(),
            created: Vec::new(),
            later: Vec::new(),
            done: false,
        }))
    }

    /// The root's reference set (criu's own at dump).
    pub fn root_set(&self) -> u32 {
        self.root_set
    }

    fn hierarchy(&mut self, i: usize) -> Result<&Hierarchy, CgroupError> {
        if self.hier[i].is_none() {
            let h = Hierarchy::open(&self.entry.controllers[i].cnames, self.opts.yard.as_deref())?;
            self.hier[i] = Some(h);
        }
        Ok(self.hier[i].as_ref().expect("opened above"))
    }

    /// Creates or reuses every directory of the image (before any task exists).
    pub fn prepare(&mut self) -> Result<(), CgroupError> {
        for i in 0..self.entry.controllers.len() {
            let dirs = std::mem::take(&mut self.entry.controllers[i].dirs);
            let r = dirs
                .iter()
                .try_for_each(|d| self.prepare_dir(i, "", d, true));
            self.entry.controllers[i].dirs = dirs;
            r?;
        }
        Ok(())
    }

    fn prepare_dir(
        &mut self,
        i: usize,
        parent: &str,
        d: &CgroupDirEntry,
        head: bool,
    ) -> Result<(), CgroupError> {
        let path = join(parent, &d.dir_name);
        let mode = self.opts.mode;
        let is_root = path.is_empty();
        let exists = std::fs::metadata(self.hierarchy(i)?.path(&path)).is_ok();
        if !exists {
            if matches!(mode, Mode::None | Mode::Props) {
                return Err(CgroupError::Missing {
                    path: self.hierarchy(i)?.show(&path),
                    mode: mode.name(),
                });
            }
            self.mkdirs(i, &path, head)?;
            let h = self.hierarchy(i)?;
            set_perms(h, &path, d.dir_perms.as_ref())?;
            for p in d.properties.iter().filter(|p| props::is_special(&p.name)) {
                write_special(h, &path, p)?;
            }
            for p in d.properties.iter().filter(|p| !props::is_special(&p.name)) {
                self.later.push((i, path.clone(), p.clone()));
            }
        } else if !is_root {
            match mode {
                Mode::Strict => {
                    let h = self.hierarchy(i)?;
                    for p in &d.properties {
                        compare(h, &path, p)?;
                    }
                }
                Mode::Full | Mode::Props => {
                    let h = self.hierarchy(i)?;
                    set_perms(h, &path, d.dir_perms.as_ref())?;
                    for p in &d.properties {
                        self.later.push((i, path.clone(), p.clone()));
                    }
                }
                Mode::Soft => set_perms(self.hierarchy(i)?, &path, d.dir_perms.as_ref())?,
                Mode::None | Mode::Ignore => {}
            }
        }
        d.children
            .iter()
            .try_for_each(|c| self.prepare_dir(i, &path, c, false))
    }

    /// mkdir of `path` (and of its missing parents for a head), each one recorded.
    fn mkdirs(&mut self, i: usize, path: &str, head: bool) -> Result<(), CgroupError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let from = if head { 1 } else { parts.len() };
        for n in from..=parts.len() {
            let p = parts[..n].join("/");
            let h = self.hierarchy(i)?;
            if std::fs::metadata(h.path(&p)).is_ok() {
                continue;
            }
            std::fs::create_dir(h.path(&p)).map_err(h.err(&p, "creating"))?;
            tracing::info!(dir = %h.show(&p), "cgroup created");
            self.created.push((i, p));
        }
        Ok(())
    }

    fn set(&self, id: u32) -> Option<&CgSetEntry> {
        self.entry.sets.iter().find(|s| s.id == id)
    }

    /// Moves process `pid` into set `set` unless `current` (the set it inherited) is it.
    pub fn enter(&mut self, pid: i32, set: u32, current: u32) -> Result<(), CgroupError> {
        self.enter_as(pid, set, current, false)
    }

    /// Moves thread `tid` alone into `set` (v1 `tasks`, v2 `cgroup.threads`).
    pub fn enter_thread(&mut self, tid: i32, set: u32, current: u32) -> Result<(), CgroupError> {
        self.enter_as(tid, set, current, true)
    }

    fn enter_as(
        &mut self,
        id: i32,
        set: u32,
        current: u32,
        thread: bool,
    ) -> Result<(), CgroupError> {
        if set == current {
            return Ok(());
        }
        let members = self
            .set(set)
            .ok_or_else(|| bad(None, format!("no cgroup set {set} (task {id})")))?
            .ctls
            .clone();
        for m in members {
            let i = self
                .entry
                .controllers
                .iter()
                .position(|c| contains(&c.cnames, &m.name))
                .ok_or_else(|| {
                    bad(
                        format!("set {set}"),
                        format!("no controller for {:?}", m.name),
                    )
                })?;
            let v2 = is_v2(&self.entry.controllers[i].cnames);
            let file = match (thread, v2) {
                (false, _) => "cgroup.procs",
                (true, false) => "tasks",
                (true, true) => "cgroup.threads",
            };
            let h = self.hierarchy(i)?;
            let rel = join(&m.path, file);
            h.write(&rel, &id.to_string())?;
            tracing::debug!(id, to = %h.show(&m.path), "moved into its cgroup");
        }
        Ok(())
    }

    /// Writes the properties left for when every task is in place.
    pub fn finish(&mut self) -> Result<(), CgroupError> {
        let later = std::mem::take(&mut self.later);
        for (i, dir, p) in &later {
            let h = self.hierarchy(*i)?;
            write_prop(h, dir, p)?;
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for CgroupRestore {
    /// A restore that did not finish removes the directories it made, deepest first (its
    /// tasks are dead by now; a cgroup stays busy until they are reaped).
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for (i, p) in std::mem::take(&mut self.created).into_iter().rev() {
            let Some(h) = self.hier[i].as_ref() else {
                continue;
            };
            let t0 = Instant::now();
            loop {
                match std::fs::remove_dir(h.path(&p)) {
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && t0.elapsed() < Duration::from_secs(2) =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        tracing::warn!(dir = %h.show(&p), error = %e, "cannot remove a cgroup made by the failed restore");
                        break;
                    }
                    Ok(()) => break,
                }
            }
        }
    }
}

fn set_perms(h: &Hierarchy, rel: &str, perms: Option<&CgroupPerms>) -> Result<(), CgroupError> {
    let Some(p) = perms else { return Ok(()) };
    let path = h.path(rel);
    chown(&path, Some(p.uid), Some(p.gid)).map_err(h.err(rel, "chown"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(p.mode & 0o7777))
        .map_err(h.err(rel, "chmod"))
}

/// A special property, at creation (CRIU's `restore_special_property`).
fn write_special(h: &Hierarchy, dir: &str, p: &CgroupPropEntry) -> Result<(), CgroupError> {
    match (p.name.as_str(), p.value.as_str()) {
        // Kernel defaults (CRIU skips them too: old kernels refused the write).
        ("memory.swappiness", "60") | ("memory.oom_control", "0") => Ok(()),
        ("cgroup.type", v) if v != "threaded" => Ok(()),
        ("devices.list", v) => {
            // A whitelist: deny all, then allow each line, one write per line.
            h.write(&join(dir, "devices.deny"), "a")?;
            for line in v.lines().filter(|l| !l.is_empty()) {
                h.write(&join(dir, "devices.allow"), line)?;
            }
            Ok(())
        }
        _ => write_value(h, dir, p),
    }
}

/// One property: its permissions, then its value (CRIU's `restore_cgroup_prop`).
fn write_prop(h: &Hierarchy, dir: &str, p: &CgroupPropEntry) -> Result<(), CgroupError> {
    if props::is_special(&p.name) {
        return Ok(()); // written at creation only
    }
    write_value(h, dir, p)
}

/// Permissions and value of one property, whatever its kind.
fn write_value(h: &Hierarchy, dir: &str, p: &CgroupPropEntry) -> Result<(), CgroupError> {
    let rel = join(dir, &p.name);
    if let Some(perms) = &p.perms {
        set_perms(h, &rel, Some(perms))?;
    }
    if props::is_membership(&p.name) || p.name == "freezer.state" {
        return Ok(());
    }
    match p.name.as_str() {
        "cgroup.subtree_control" => {
            let v: Vec<String> = p
                .value
                .split_whitespace()
                .map(|c| format!("+{c}"))
                .collect();
            if v.is_empty() {
                return Ok(());
            }
            h.write(&rel, &v.join(" "))
        }
        "net_prio.ifpriomap" => {
            // One interface per write; interfaces missing here are skipped.
            for line in p.value.lines().filter(|l| !l.is_empty()) {
                if let Err(e) = h.write(&rel, line) {
                    tracing::info!(error = %e, line, "net_prio.ifpriomap line not restored");
                }
            }
            Ok(())
        }
        _ => h.write(&rel, &p.value),
    }
}

/// `--manage-cgroups=strict` on an existing directory: its value must be the dumped one.
fn compare(h: &Hierarchy, dir: &str, p: &CgroupPropEntry) -> Result<(), CgroupError> {
    if props::is_membership(&p.name) {
        return Ok(());
    }
    let rel = join(dir, &p.name);
    let raw = h.read(&rel)?;
    let have = props::normalize(&p.name, &raw).unwrap_or(raw);
    if have != p.value {
        return Err(CgroupError::Differs {
            file: h.show(&rel),
            want: p.value.clone(),
            have,
        });
    }
    Ok(())
}
