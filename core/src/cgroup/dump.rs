//! Dump side: cgroup sets of the threads, then `cgroup.img` (sets other than criu's own,
//! every hierarchy, and the directories at and below the tasks' cgroups with their
//! properties), as CRIU's `dump_thread_cgroup` / `dump_cgroups`.

use std::os::unix::fs::MetadataExt;

use criu_proto::images::{
    CgControllerEntry, CgMemberEntry, CgSetEntry, CgroupDirEntry, CgroupEntry, CgroupPerms,
    CgroupPropEntry,
};

use super::fs::{Hierarchy, is_v2};
use super::{CgroupError, CgroupOptions, Mode, props};

/// One member of a set: hierarchy name (`cpu,cpuacct`, `name=x`, `` for v2) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub path: String,
}

/// A directory of a hierarchy, with its properties and the directories below it.
#[derive(Debug, Clone)]
struct Dir {
    /// Absolute in the hierarchy (`/` for its root).
    path: String,
    perms: CgroupPerms,
    props: Vec<CgroupPropEntry>,
    children: Vec<Dir>,
}

/// One hierarchy: its controllers and its dumped directories.
#[derive(Debug, Clone)]
struct Controller {
    cnames: Vec<String>,
    dirs: Vec<Dir>,
    threaded: bool,
}

/// The sets seen so far and the hierarchies of criu's own cgroups.
#[derive(Debug)]
pub struct Collector {
    opts: CgroupOptions,
    /// Set ids start at 1 (criu's own); `sets[i]` has id `i + 1`.
    sets: Vec<Vec<Member>>,
    root_set: Option<u32>,
    controllers: Vec<Controller>,
}

/// Is `name` among the controllers CRIU dumps (`--cgroup-dump-controller`, all if none)?
fn wanted(opts: &CgroupOptions, name: &str) -> bool {
    opts.dump_controllers.is_empty() || opts.dump_controllers.iter().any(|c| c == name)
}

/// Parses a `/proc/.../cgroup` text into members sorted by name (CRIU's order).
pub fn parse_members(text: &str, opts: &CgroupOptions) -> Result<Vec<Member>, String> {
    let lines = crate::proc::misc::parse_cgroup(text).map_err(|e| e.to_string())?;
    let mut v: Vec<Member> = lines
        .into_iter()
        .filter(|l| wanted(opts, &l.controllers))
        .map(|l| Member {
            name: l.controllers,
            path: l.path,
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// Does hierarchy `cnames` hold the member named `name` (CRIU's `cgroup_contains`)?
pub fn contains(cnames: &[String], name: &str) -> bool {
    if is_v2(cnames) {
        return name.is_empty();
    }
    !cnames.is_empty() && cnames.iter().all(|c| name.split(',').any(|n| n == c))
}

impl Collector {
    /// Starts with criu's own set (number 1) and the hierarchies it is in.
    pub fn new(opts: CgroupOptions) -> Result<Collector, CgroupError> {
        let me = std::process::id() as i32;
        let text = read_proc(me, me)?;
        let own = parse_members(&text, &opts).map_err(|reason| CgroupError::Proc {
            pid: me,
            tid: me,
            reason,
        })?;
        // Every real controller (named hierarchies only when a task uses them).
        let controllers = own
            .iter()
            .filter_map(|m| {
                let cnames: Vec<String> = m
                    .name
                    .split(',')
                    .filter(|n| !n.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                (!cnames.is_empty()).then_some(Controller {
                    cnames,
                    dirs: Vec::new(),
                    threaded: false,
                })
            })
            .collect();
        Ok(Collector {
            opts,
            sets: vec![own],
            root_set: None,
            controllers,
        })
    }

    /// The set id of thread `tid` of `pid` (the first process asked about is the root).
    pub fn thread_set(&mut self, pid: i32, tid: i32) -> Result<u32, CgroupError> {
        let text = read_proc(pid, tid)?;
        let members = parse_members(&text, &self.opts).map_err(|reason| CgroupError::Proc {
            pid,
            tid,
            reason,
        })?;
        let id = match self.sets.iter().position(|s| *s == members) {
            Some(i) => i as u32 + 1,
            None => {
                self.sets.push(members);
                self.sets.len() as u32
            }
        };
        self.root_set.get_or_insert(id);
        Ok(id)
    }

    /// The image entry, or None when every task is in criu's cgroups (nothing to restore).
    pub fn entry(&mut self) -> Result<Option<CgroupEntry>, CgroupError> {
        if self.sets.len() == 1 && self.root_set.is_none_or(|r| r == 1) {
            return Ok(None);
        }
        for set in self.sets.clone().iter().skip(1) {
            for m in set {
                self.collect(m)?;
            }
        }
        let sets = self
            .sets
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, s)| CgSetEntry {
                id: i as u32 + 1,
                ctls: s
                    .iter()
                    .map(|m| CgMemberEntry {
                        name: m.name.clone(),
                        path: m.path.clone(),
                        cgns_prefix: None,
                    })
                    .collect(),
            })
            .collect();
        let controllers = self
            .controllers
            .iter()
            .map(|c| CgControllerEntry {
                cnames: c.cnames.clone(),
                dirs: c.dirs.iter().map(|d| dir_entry(d, 0)).collect(),
                is_threaded: Some(c.threaded),
            })
            .collect();
        Ok(Some(CgroupEntry { sets, controllers }))
    }

    /// Walks member `m`'s directory and everything below it into its hierarchy.
    fn collect(&mut self, m: &Member) -> Result<(), CgroupError> {
        let idx = match self
            .controllers
            .iter()
            .position(|c| contains(&c.cnames, &m.name))
        {
            Some(i) => i,
            None if m.name.starts_with("name=") => {
                self.controllers.push(Controller {
                    cnames: vec![m.name.clone()],
                    dirs: Vec::new(),
                    threaded: false,
                });
                self.controllers.len() - 1
            }
            None => {
                return Err(CgroupError::BadImage {
                    entry: None,
                    reason: format!("controller {:?} of a task is not mounted for criu", m.name),
                });
            }
        };
        if self.opts.mode == Mode::Ignore {
            return Ok(());
        }
        let cnames = self.controllers[idx].cnames.clone();
        let h = Hierarchy::open(&cnames, self.opts.yard.as_deref())?;
        let root = self.opts.root_for(&cnames).unwrap_or(&m.path).to_string();
        let ctl = &mut self.controllers[idx];
        walk(&h, &cnames, &root, ctl)
    }
}

fn read_proc(pid: i32, tid: i32) -> Result<String, CgroupError> {
    let p = format!("/proc/{pid}/task/{tid}/cgroup");
    std::fs::read_to_string(&p).map_err(|source| CgroupError::Io {
        path: p,
        what: "reading",
        source,
    })
}

/// CRIU's `issubpath`: `path` is `dir` or below it.
fn below(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Adds `d` where it belongs in `dirs` (CRIU's `find_dir`): nothing if already there,
/// under the deepest directory holding it, else as a new head.
fn insert(dirs: &mut Vec<Dir>, d: Dir) {
    if dirs.iter().any(|x| x.path == d.path) {
        return;
    }
    match dirs.iter_mut().find(|x| below(&d.path, &x.path)) {
        Some(parent) => insert(&mut parent.children, d),
        None => dirs.push(d),
    }
}

/// Pre-order walk of `rel` and its subdirectories (sorted by name) into `ctl`.
fn walk(
    h: &Hierarchy,
    cnames: &[String],
    rel: &str,
    ctl: &mut Controller,
) -> Result<(), CgroupError> {
    let md = std::fs::metadata(h.path(rel)).map_err(h.err(rel, "stat of the directory"))?;
    let mut props = Vec::new();
    let own = cnames.iter().flat_map(|c| props::of_controller(c).iter());
    let global = if is_v2(cnames) {
        props::GLOBAL_V2
    } else {
        props::GLOBAL_V1
    };
    for name in own.chain(global.iter()) {
        let file = format!("{}/{name}", rel.trim_end_matches('/'));
        let Ok(pm) = std::fs::metadata(h.path(&file)) else {
            continue; // not on this kernel
        };
        let value = if props::is_membership(name) {
            String::new()
        } else {
            props::normalize(name, &h.read(&file)?).map_err(|reason| CgroupError::BadImage {
                entry: None,
                reason: format!("{}: {reason}", h.show(&file)),
            })?
        };
        if (*name == "cgroup.type" && value == "threaded") || *name == "tasks" {
            ctl.threaded = true;
        }
        props.push(CgroupPropEntry {
            name: name.to_string(),
            value,
            perms: Some(perms(&pm)),
        });
    }
    let path = if rel.is_empty() {
        "/".to_string()
    } else {
        rel.to_string()
    };
    insert(
        &mut ctl.dirs,
        Dir {
            path: path.clone(),
            perms: perms(&md),
            props,
            children: Vec::new(),
        },
    );
    let mut subdirs: Vec<String> = std::fs::read_dir(h.path(rel))
        .map_err(h.err(rel, "listing"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    subdirs.sort();
    for s in subdirs {
        let child = if path == "/" {
            format!("/{s}")
        } else {
            format!("{path}/{s}")
        };
        walk(h, cnames, &child, ctl)?;
    }
    Ok(())
}

fn perms(m: &std::fs::Metadata) -> CgroupPerms {
    CgroupPerms {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
    }
}

/// The image form of `d`: a head's name is its path without the leading `/` (the root's
/// is empty), a child's the part after its parent's path.
fn dir_entry(d: &Dir, parent_len: usize) -> CgroupDirEntry {
    let name = if parent_len == 0 || parent_len == 1 {
        d.path.trim_start_matches('/').to_string()
    } else {
        d.path[parent_len..].trim_start_matches('/').to_string()
    };
    CgroupDirEntry {
        dir_name: name,
        children: d
            .children
            .iter()
            .map(|c| dir_entry(c, d.path.len()))
            .collect(),
        properties: d.props.clone(),
        dir_perms: Some(d.perms),
    }
}
