//! crit's `x DIR ps|fds|mems|rss` views over an images directory, as structured results
//! (the CLI prints them the way crit does).

use std::collections::HashMap;

use criu_proto::images::{
    FdTypes, FileEntry, FsEntry, MmEntry, PipeEntry, PstreeEntry, RegFileEntry, TaskKobjIdsEntry,
    UnixSkEntry,
};

use super::{ImageDir, ImageError, ImageKind, pagemap_nr_pages};

/// Errors of the inspection views.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Image(#[from] ImageError),
    /// No task has ppid 0.
    #[error("pstree.img has no root task (ppid 0)")]
    NoRoot,
    /// A task's parent is not in the tree.
    #[error("task {pid} has parent {ppid}, which is not in pstree.img")]
    UnknownParent { pid: u32, ppid: u32 },
    /// A task's core image lacks the task-wide part.
    #[error("core-{pid}.img has no task core (tc)")]
    NoTaskCore { pid: u32 },
}

/// One line of `x ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsLine {
    pub pid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// Depth in the tree (root 0).
    pub depth: usize,
    pub comm: String,
}

/// The process tree, depth first from the root, children in pstree order.
pub fn ps(dir: &ImageDir) -> Result<Vec<PsLine>, InspectError> {
    let tree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
    let mut kids: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut root = None;
    for (i, p) in tree.iter().enumerate() {
        if p.ppid == 0 {
            root = Some(i);
        } else if tree.iter().any(|q| q.pid == p.ppid) {
            kids.entry(p.ppid).or_default().push(i);
        } else {
            return Err(InspectError::UnknownParent {
                pid: p.pid,
                ppid: p.ppid,
            });
        }
    }
    let root = root.ok_or(InspectError::NoRoot)?;
    let mut out = Vec::new();
    let mut seen = vec![false; tree.len()];
    let mut stack = vec![(root, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        // Duplicate pids could make a cycle; show each entry once.
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let p = &tree[i];
        let core: criu_proto::images::CoreEntry =
            dir.read_single(ImageKind::Core, u64::from(p.pid))?;
        let tc = core.tc.ok_or(InspectError::NoTaskCore { pid: p.pid })?;
        out.push(PsLine {
            pid: p.pid,
            pgid: p.pgid,
            sid: p.sid,
            depth,
            comm: tc.comm,
        });
        if let Some(k) = kids.get(&p.pid) {
            for &c in k.iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    }
    Ok(out)
}

/// Resolves file ids to the short names crit shows, loading images on first use.
#[derive(Debug)]
struct FileNames<'a> {
    dir: &'a ImageDir,
    files: Option<Vec<FileEntry>>,
    reg: Option<Vec<RegFileEntry>>,
    pipes: Option<Vec<PipeEntry>>,
    unix: Option<Vec<UnixSkEntry>>,
}

fn load_or_empty<M: prost::Message + Default>(
    dir: &ImageDir,
    kind: ImageKind,
) -> Result<Vec<M>, ImageError> {
    match dir.read_all(kind, 0) {
        Err(ImageError::Open { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Vec::new())
        }
        other => other,
    }
}

impl<'a> FileNames<'a> {
    fn new(dir: &'a ImageDir) -> Self {
        FileNames {
            dir,
            files: None,
            reg: None,
            pipes: None,
            unix: None,
        }
    }

    /// The `files.img` entry with `id`, if files.img exists and has entries.
    fn in_files(&mut self, id: u32) -> Result<Option<&FileEntry>, ImageError> {
        if self.files.is_none() {
            self.files = Some(load_or_empty(self.dir, ImageKind::Files)?);
        }
        Ok(self
            .files
            .as_ref()
            .and_then(|f| f.iter().find(|e| e.id == id)))
    }

    fn has_files(&self) -> bool {
        self.files.as_ref().is_some_and(|f| !f.is_empty())
    }

    fn reg(&mut self, id: u32) -> Result<String, ImageError> {
        let from_files = self
            .in_files(id)?
            .map(|f| f.reg.as_ref().map(|r| r.name.clone()));
        let name = match from_files {
            Some(n) => n,
            None if self.has_files() => None,
            None => {
                if self.reg.is_none() {
                    self.reg = Some(load_or_empty(self.dir, ImageKind::RegFiles)?);
                }
                let reg = self.reg.as_deref().unwrap_or_default();
                reg.iter().find(|r| r.id == id).map(|r| r.name.clone())
            }
        };
        Ok(match name {
            Some(n) if !n.is_empty() => n,
            _ => "unknown path".to_string(),
        })
    }

    fn pipe(&mut self, id: u32) -> Result<String, ImageError> {
        let from_files = self
            .in_files(id)?
            .map(|f| f.pipe.as_ref().map(|p| p.pipe_id));
        let pipe_id = match from_files {
            Some(p) => p,
            None if self.has_files() => None,
            None => {
                if self.pipes.is_none() {
                    self.pipes = Some(load_or_empty(self.dir, ImageKind::Pipes)?);
                }
                let pipes = self.pipes.as_deref().unwrap_or_default();
                pipes.iter().find(|p| p.id == id).map(|p| p.pipe_id)
            }
        };
        Ok(match pipe_id {
            Some(p) => format!("pipe[{p}]"),
            None => "pipe[?]".to_string(),
        })
    }

    fn unix(&mut self, id: u32) -> Result<String, ImageError> {
        let from_files = self.in_files(id)?.map(|f| f.usk.clone());
        let sk = match from_files {
            Some(s) => s,
            None if self.has_files() => None,
            None => {
                if self.unix.is_none() {
                    self.unix = Some(load_or_empty(self.dir, ImageKind::Unixsk)?);
                }
                let unix = self.unix.as_deref().unwrap_or_default();
                unix.iter().find(|u| u.id == id).cloned()
            }
        };
        Ok(match sk {
            None => "unix[?]".to_string(),
            Some(u) => {
                let name = if u.name.is_empty() {
                    String::new()
                } else {
                    format!(" {}", criu_proto::json::quopri_encode(&u.name))
                };
                format!("unix[{} ({}){}]", u.ino, u.peer, name)
            }
        })
    }

    fn describe(&mut self, ty: i32, id: u32) -> Result<String, ImageError> {
        match FdTypes::try_from(ty) {
            Ok(FdTypes::Reg) => self.reg(id),
            Ok(FdTypes::Pipe) => self.pipe(id),
            Ok(FdTypes::Unixsk) => self.unix(id),
            Ok(t) => Ok(format!("{}.{id}", t.as_str_name())),
            Err(_) => Ok(format!("{ty}.{id}")),
        }
    }
}

/// One fd (or `cwd` / `root`) of a task in `x fds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdLine {
    /// The fd number, or "cwd" / "root".
    pub fd: String,
    pub file: String,
}

/// A task's files in `x fds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFds {
    pub pid: u32,
    pub fds: Vec<FdLine>,
}

/// Every task's fds, cwd and root.
pub fn fds(dir: &ImageDir) -> Result<Vec<TaskFds>, InspectError> {
    let tree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
    let mut names = FileNames::new(dir);
    let mut out = Vec::new();
    for p in &tree {
        let pid = u64::from(p.pid);
        let ids: TaskKobjIdsEntry = dir.read_single(ImageKind::Ids, pid)?;
        let fdinfo: Vec<criu_proto::images::FdinfoEntry> =
            dir.read_all(ImageKind::Fdinfo, u64::from(ids.files_id))?;
        let mut fds = Vec::new();
        for fd in &fdinfo {
            fds.push(FdLine {
                fd: fd.fd.to_string(),
                file: names.describe(fd.r#type, fd.id)?,
            });
        }
        let fs: FsEntry = dir.read_single(ImageKind::Fs, pid)?;
        fds.push(FdLine {
            fd: "cwd".into(),
            file: names.reg(fs.cwd_id)?,
        });
        fds.push(FdLine {
            fd: "root".into(),
            file: names.reg(fs.root_id)?,
        });
        out.push(TaskFds { pid: p.pid, fds });
    }
    Ok(out)
}

/// One mapping in `x mems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemLine {
    pub start: u64,
    pub end: u64,
    /// "rwx" with '-' for missing rights.
    pub prot: String,
    /// What is mapped (" [stack]", " /path + 0x1000 (s)", ...), crit's wording.
    pub desc: String,
}

/// A task's mappings in `x mems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMems {
    pub pid: u32,
    pub exe: String,
    pub vmas: Vec<MemLine>,
}

const AREA_REGULAR: u32 = 1 << 0;
const AREA_STACK: u32 = 1 << 1;
const AREA_VSYSCALL: u32 = 1 << 2;
const AREA_VDSO: u32 = 1 << 3;
const FILE_PRIVATE: u32 = 1 << 6;
const FILE_SHARED: u32 = 1 << 7;
const ANON_SHARED: u32 = 1 << 8;
const AREA_SYSVIPC: u32 = 1 << 10;
const AREA_SOCKET: u32 = 1 << 11;
const MAP_GROWSDOWN: u32 = 0x0100;

/// Every task's memory map.
pub fn mems(dir: &ImageDir) -> Result<Vec<TaskMems>, InspectError> {
    let tree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
    let mut names = FileNames::new(dir);
    // Shared objects get small sequential ids across tasks, like crit.
    let mut vids: HashMap<u64, u64> = HashMap::new();
    let mut vid = |shmid: u64| -> u64 {
        let n = vids.len() as u64 + 1;
        *vids.entry(shmid).or_insert(n)
    };
    let mut out = Vec::new();
    for p in &tree {
        // Zombies and processes sharing another's address space (CLONE_VM) have none.
        if !dir.exists(ImageKind::Mm, u64::from(p.pid)) {
            continue;
        }
        let mm: MmEntry = dir.read_single(ImageKind::Mm, u64::from(p.pid))?;
        let exe = names.reg(mm.exe_file_id)?;
        let mut vmas = Vec::new();
        for v in &mm.vmas {
            let st = v.status;
            let mut desc = if st & AREA_SYSVIPC != 0 {
                format!(" ips[{:x}]", vid(v.shmid))
            } else if st & ANON_SHARED != 0 {
                format!(" shmem[{:x}]", vid(v.shmid))
            } else if st & AREA_SOCKET != 0 {
                format!(" packet[{:x}]", vid(v.shmid))
            } else if st & (FILE_PRIVATE | FILE_SHARED) != 0 {
                let id = u32::try_from(v.shmid).unwrap_or(u32::MAX);
                let mut s = format!(" {}", names.reg(id)?);
                if v.pgoff != 0 {
                    s += &format!(" + {:#x}", v.pgoff);
                }
                if st & FILE_SHARED != 0 {
                    s += " (s)";
                }
                s
            } else if st & AREA_STACK != 0 {
                " [stack]".into()
            } else if st & AREA_VSYSCALL != 0 {
                " [vsyscall]".into()
            } else if st & AREA_VDSO != 0 {
                " [vdso]".into()
            } else if v.flags & MAP_GROWSDOWN != 0 {
                " [stack?]".into()
            } else {
                String::new()
            };
            if st & AREA_REGULAR == 0 {
                desc += " *";
            }
            vmas.push(MemLine {
                start: v.start,
                end: v.end,
                prot: prot_string(v.prot),
                desc,
            });
        }
        out.push(TaskMems {
            pid: p.pid,
            exe,
            vmas,
        });
    }
    Ok(out)
}

fn prot_string(prot: u32) -> String {
    let mut s = String::with_capacity(3);
    s.push(if prot & 1 != 0 { 'r' } else { '-' });
    s.push(if prot & 2 != 0 { 'w' } else { '-' });
    s.push(if prot & 4 != 0 { 'x' } else { '-' });
    s
}

/// A mapping touched by a pagemap run in `x rss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RssVma {
    /// The same mapping as the previous line's last one (crit prints " ~").
    Same,
    /// A mapping: start, length in pages, file name for file mappings.
    Vma {
        start: u64,
        pages: u64,
        file: Option<String>,
    },
}

/// One pagemap run and the mappings it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssRun {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub vmas: Vec<RssVma>,
}

/// A task's resident runs in `x rss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRss {
    pub pid: u32,
    pub runs: Vec<RssRun>,
}

/// Every task's pagemap runs matched against its mappings.
pub fn rss(dir: &ImageDir) -> Result<Vec<TaskRss>, InspectError> {
    let tree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
    let mut names = FileNames::new(dir);
    let mut out = Vec::new();
    for p in &tree {
        let pid = u64::from(p.pid);
        // Zombies and processes sharing another's address space (CLONE_VM) have none.
        if !dir.exists(ImageKind::Mm, pid) {
            continue;
        }
        let mm: MmEntry = dir.read_single(ImageKind::Mm, pid)?;
        let (_, pms) = dir.read_pagemap(pid)?;
        let vmas = &mm.vmas;
        let mut runs = Vec::new();
        let mut vmi = 0usize;
        let mut prev: Option<usize> = None;
        for pm in &pms {
            let nr = pagemap_nr_pages(pm);
            let mut run = RssRun {
                vaddr: pm.vaddr,
                nr_pages: nr,
                vmas: Vec::new(),
            };
            while vmi < vmas.len() && vmas[vmi].end <= pm.vaddr {
                vmi += 1;
            }
            let pme = pm.vaddr.saturating_add(nr.saturating_mul(4096));
            let first = vmi;
            while vmi < vmas.len() && vmas[vmi].start < pme {
                let v = &vmas[vmi];
                if prev == Some(vmi) {
                    run.vmas.push(RssVma::Same);
                } else {
                    let file = if v.status & (FILE_PRIVATE | FILE_SHARED) != 0 {
                        Some(names.reg(u32::try_from(v.shmid).unwrap_or(u32::MAX))?)
                    } else {
                        None
                    };
                    run.vmas.push(RssVma::Vma {
                        start: v.start,
                        pages: v.end.saturating_sub(v.start) >> 12,
                        file,
                    });
                    prev = Some(vmi);
                }
                vmi += 1;
            }
            // The last mapping may continue into the next run.
            if vmi > first {
                vmi -= 1;
            }
            runs.push(run);
        }
        out.push(TaskRss { pid: p.pid, runs });
    }
    Ok(out)
}
