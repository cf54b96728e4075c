//! Anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS). Each shmem object (`vma_entry.shmid`)
//! is created once, in the first task that maps it, by a throw-away anonymous shared mapping
//! of the object's size; the restorer opens it through `/proc/PID/map_files`, writes the
//! pages of `pagemap-shmem-<shmid>.img` into it, and every VMA of that object (in any task)
//! maps its window from that fd, fetched into the task with `pidfd_getfd`. The mappings
//! still read "/dev/zero (deleted)" and share one object, as in the dumped tree. An object
//! the tree also reached otherwise (an fd opened on its `map_files` link, a private mapping
//! of it: the memfd plugin's) may be made first for that plugin ([`SharedObjects`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use criu_plugin_api::PluginError;

use super::error::{RestoreError, Result, bad};
use super::imgread::Images;
use super::mem::{PAGE_SIZE, PE_PARENT, PE_PRESENT, PageRun, VmaKind, VmaPlan};
use super::plan::TaskPlan;
use super::rexec::RemoteThread;
use crate::sys::filemap::FileMap;

/// One shmem object to recreate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmemPlan {
    pub shmid: u64,
    /// The object size: the end of its furthest window in any task.
    pub size: u64,
    /// `vaddr` is the offset inside the object.
    pub runs: Vec<PageRun>,
    pub pages_image: String,
    /// `MAP_HUGETLB` and its page size bits for hugetlb memory (from its VMAs), else 0.
    pub huge: u32,
}

/// Plans every shmem object the tasks map.
pub fn load_all(images: &Images, tasks: &[TaskPlan]) -> Result<BTreeMap<u64, ShmemPlan>> {
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut huge: BTreeMap<u64, u32> = BTreeMap::new();
    for v in tasks.iter().flat_map(|t| &t.vmas) {
        if let VmaKind::AnonShared { shmid } = v.kind {
            let h = v.flags & super::rebuild::MAP_HUGE_FLAGS as u32;
            if h != 0 {
                huge.insert(shmid, h);
            }
            let end = v.pgoff.checked_add(v.len()).ok_or_else(|| {
                bad(
                    "mm",
                    None,
                    format!("shmem window at {:#x} overflows", v.start),
                )
            })?;
            let s = sizes.entry(shmid).or_insert(0);
            *s = (*s).max(end);
        }
    }
    let mut out = BTreeMap::new();
    for (shmid, size) in sizes {
        let mut plan = load_one(images, shmid, size)?;
        plan.huge = huge.get(&shmid).copied().unwrap_or(0);
        out.insert(shmid, plan);
    }
    Ok(out)
}

fn load_one(images: &Images, shmid: u64, size: u64) -> Result<ShmemPlan> {
    let name = format!("pagemap-shmem-{shmid}.img");
    if !images.exists(&name) {
        // An object whose pages were all holes has no pagemap: it restores as zeros.
        return Ok(ShmemPlan {
            shmid,
            size,
            runs: Vec::new(),
            pages_image: String::new(),
            huge: 0,
        });
    }
    let (head, entries) = images.pagemap(&name)?;
    let pages_image =
        crate::image::compress_read::pages_file_name(&head).map_err(|w| bad(&name, Some(0), w))?;
    let pages_size = crate::image::compress_read::pages_len(&images.path(&pages_image))
        .map_err(|source| RestoreError::Image { source })?;
    let mut runs: Vec<PageRun> = Vec::new();
    let mut file_off = 0u64;
    for (i, pe) in entries.iter().enumerate().map(|(i, e)| (i + 1, e)) {
        let flags = pe.flags.unwrap_or(PE_PRESENT);
        if flags & PE_PARENT != 0 {
            return Err(bad(
                &name,
                Some(i),
                "pages in a parent image are not supported",
            ));
        }
        if flags & PE_PRESENT == 0 {
            continue;
        }
        let nr = pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages));
        let len = nr
            .checked_mul(PAGE_SIZE)
            .filter(|l| *l > 0)
            .ok_or_else(|| bad(&name, Some(i), format!("bad page count {nr}")))?;
        let end = pe
            .vaddr
            .checked_add(len)
            .filter(|e| *e <= size && pe.vaddr % PAGE_SIZE == 0);
        if end.is_none() {
            return Err(bad(
                &name,
                Some(i),
                format!(
                    "pages at offset {:#x} outside the {size}-byte object",
                    pe.vaddr
                ),
            ));
        }
        runs.push(PageRun {
            vaddr: pe.vaddr,
            len,
            file_off,
        });
        file_off += len;
    }
    if file_off > pages_size {
        return Err(bad(
            &name,
            None,
            format!("{file_off} bytes of pages, {pages_image} has {pages_size}"),
        ));
    }
    Ok(ShmemPlan {
        shmid,
        size,
        runs,
        pages_image,
        huge: 0,
    })
}

/// The objects of one restore created so far, by shmid: shared between the core, which maps
/// the tasks' windows from them, and the plugins, which reach them through
/// [`criu_plugin_api::RestoreContext::anon_shmem`] (the memfd plugin: an fd or a private
/// mapping of the same object), so that both use one object.
#[derive(Debug, Clone)]
pub struct SharedObjects {
    objects: Arc<Mutex<BTreeMap<u64, Arc<File>>>>,
    /// The images directory, to fill an object a plugin asks for first.
    dir: PathBuf,
    /// Each object's size as the tasks' windows need it.
    sizes: Arc<BTreeMap<u64, u64>>,
}

impl SharedObjects {
    /// No object yet; `plans` gives the sizes the core's windows need.
    pub fn new(dir: PathBuf, plans: &BTreeMap<u64, ShmemPlan>) -> SharedObjects {
        SharedObjects {
            objects: Default::default(),
            dir,
            sizes: Arc::new(plans.iter().map(|(k, p)| (*k, p.size)).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<File>>> {
        // A panic elsewhere cannot leave the map half-updated (single inserts).
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Object `shmid`, when created already.
    pub fn get(&self, shmid: u64) -> Option<Arc<File>> {
        self.lock().get(&shmid).cloned()
    }

    fn insert(&self, shmid: u64, f: Arc<File>) {
        self.lock().insert(shmid, f);
    }

    /// Object `shmid` with at least `size` bytes for a plugin: the one the core made, or a
    /// new one made here (in criu's own process) and filled from
    /// `pagemap-shmem-<shmid>.img`, which the core then maps the windows from.
    pub fn for_plugin(&self, shmid: u64, size: u64) -> std::result::Result<OwnedFd, PluginError> {
        let image = format!("pagemap-shmem-{shmid}.img");
        let io = |op: &str, e: std::io::Error| {
            PluginError::bad_image(&image, format!("shmem object {shmid}: {op}: {e}"))
        };
        let mut map = self.lock();
        let f = match map.get(&shmid) {
            Some(f) => f.clone(),
            None => {
                let full = size.max(self.sizes.get(&shmid).copied().unwrap_or(0));
                let len = usize::try_from(full)
                    .map_err(|_| PluginError::bad_image(&image, format!("size {full}")))?;
                let f = crate::sys::filemap::anon_shmem_object(len)
                    .map_err(|e| io("creating it", e))?;
                let images = Images::open(&self.dir).map_err(|e| PluginError::Image {
                    image: image.clone(),
                    source: Box::new(e),
                })?;
                fill_object(&images, shmid, full, &f).map_err(|e| PluginError::Image {
                    image: image.clone(),
                    source: Box::new(e),
                })?;
                let f = Arc::new(f);
                map.insert(shmid, f.clone());
                f
            }
        };
        grow(&f, size).map_err(|e| io("growing it", e))?;
        f.as_fd().try_clone_to_owned().map_err(|e| io("dup", e))
    }
}

/// Makes `f` at least `size` bytes long (a window may reach past what another user of the
/// object asked for).
fn grow(f: &File, size: u64) -> std::io::Result<()> {
    if f.metadata()?.len() < size {
        f.set_len(size)?;
    }
    Ok(())
}

/// The objects of one restore: plans, and the fds of those created so far.
#[derive(Debug)]
pub struct ShmemCtx<'a> {
    pub plans: &'a BTreeMap<u64, ShmemPlan>,
    pub images: &'a Images,
    pub objects: SharedObjects,
    /// Where tasks in a new pid namespace fetch the objects from (see `ns::relay`).
    pub relay: Option<std::sync::Arc<super::ns::relay::Relay>>,
}

fn task_err(rt: &RemoteThread, reason: String) -> RestoreError {
    RestoreError::Task {
        pid: rt.pid,
        tid: rt.tid.as_raw(),
        step: rt.step.clone(),
        reason,
    }
}

/// Maps `v`, a window of object `shmid`, creating the object first if needed.
pub fn map_window(
    rt: &mut RemoteThread,
    v: &VmaPlan,
    shmid: u64,
    ctx: &mut ShmemCtx<'_>,
) -> Result<()> {
    let obj = match ctx.objects.get(shmid) {
        Some(f) => {
            // Made for a plugin first: big enough for every window too.
            let need = ctx.plans.get(&shmid).map_or(0, |p| p.size);
            grow(&f, need)
                .map_err(|e| task_err(rt, format!("growing shmem object {shmid}: {e}")))?;
            f
        }
        None => {
            let f = Arc::new(create(rt, shmid, ctx)?);
            ctx.objects.insert(shmid, f.clone());
            f
        }
    };
    let mut src = obj.as_raw_fd();
    rt.step = format!("mapping shared anonymous vma {:#x}-{:#x}", v.start, v.end);
    let mut me = std::process::id() as u64;
    if let Some(r) = &ctx.relay {
        src = r.put(src)?;
        me = r.inner_pid() as u64;
    }
    let pidfd = rt.call("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
    let fd = rt.call(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        [pidfd, src as u64, 0, 0, 0, 0],
    );
    rt.call("close", libc::SYS_close, [pidfd, 0, 0, 0, 0, 0])?;
    let fd = fd?;
    let flags = (v.flags as i32 & (libc::MAP_NORESERVE | libc::MAP_LOCKED))
        | libc::MAP_SHARED
        | libc::MAP_FIXED;
    let got = rt.call(
        "mmap",
        libc::SYS_mmap,
        [
            v.start,
            v.len(),
            u64::from(v.prot),
            flags as u64,
            fd,
            v.pgoff,
        ],
    );
    rt.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    if got? != v.start {
        return Err(task_err(rt, "shared window mapped elsewhere".into()));
    }
    Ok(())
}

/// Creates object `shmid` in `rt`'s task and fills it; returns its fd in the restorer.
fn create(rt: &mut RemoteThread, shmid: u64, ctx: &ShmemCtx<'_>) -> Result<File> {
    let plan = ctx
        .plans
        .get(&shmid)
        .ok_or_else(|| bad("mm", None, format!("shmem object {shmid} has no plan")))?;
    rt.step = format!("creating shmem object {shmid} ({} bytes)", plan.size);
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    // Hugetlb memory comes from the huge page pool of its size, as it did.
    let flags = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64 | u64::from(plan.huge);
    let addr = rt.call(
        "mmap",
        libc::SYS_mmap,
        [0, plan.size, prot, flags, u64::MAX, 0],
    )?;
    let link = format!(
        "/proc/{}/map_files/{:x}-{:x}",
        rt.tid,
        addr,
        addr + plan.size
    );
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&link);
    rt.call("munmap", libc::SYS_munmap, [addr, plan.size, 0, 0, 0, 0])?;
    let obj = opened.map_err(|e| task_err(rt, format!("open {link}: {e}")))?;
    write_pages(ctx.images, plan, &obj).map_err(|e| match e {
        WriteError::Image(e) => e,
        WriteError::Object(e) => task_err(rt, format!("writing shmem object {shmid}: {e}")),
    })?;
    Ok(obj)
}

/// Writes the pages of `plan` into `obj` at their offsets. Errors reading the pages file
/// are image errors; writing errors come back as the io error (the caller names the object).
pub fn write_pages(
    images: &Images,
    plan: &ShmemPlan,
    obj: &File,
) -> std::result::Result<(), WriteError> {
    if plan.runs.is_empty() {
        return Ok(());
    }
    let pages_path = images.path(&plan.pages_image);
    // A compressed pages file comes back decompressed into a memfd.
    let pages = crate::image::compress_read::open_pages(&pages_path)
        .map_err(|source| WriteError::Image(RestoreError::Image { source }))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut map: Option<FileMap> = None;
    for run in &plan.runs {
        let mut done = 0u64;
        while done < run.len {
            let chunk = (run.len - done).min(buf.len() as u64);
            let n = chunk as usize;
            pages
                .read_exact_at(&mut buf[..n], run.file_off + done)
                .map_err(|source| {
                    WriteError::Image(RestoreError::ImageIo {
                        path: pages_path.clone(),
                        source,
                    })
                })?;
            // The object may end inside its last page (a memfd of any size): the rest of
            // that page is not part of it.
            let at = run.vaddr + done;
            let n = n.min(plan.size.saturating_sub(at) as usize);
            match &mut map {
                Some(m) => m
                    .write_at(at as usize, &buf[..n])
                    .map_err(|e| WriteError::Object(e.into()))?,
                None => match obj.write_all_at(&buf[..n], at) {
                    Ok(()) => {}
                    // hugetlbfs (an MFD_HUGETLB memfd) has no write(2): fill it through a
                    // shared mapping of the whole object instead.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        let len = usize::try_from(plan.size).map_err(|_| WriteError::Object(e))?;
                        let mut m = FileMap::shared(obj.as_fd(), len)
                            .map_err(|e| WriteError::Object(e.into()))?;
                        m.write_at(at as usize, &buf[..n])
                            .map_err(|e| WriteError::Object(e.into()))?;
                        map = Some(m);
                    }
                    Err(e) => return Err(WriteError::Object(e)),
                },
            }
            done += chunk;
        }
    }
    Ok(())
}

/// Why [`write_pages`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Image(RestoreError),
    #[error("writing the object")]
    Object(#[source] std::io::Error),
}

/// Plans object `shmid` of `size` bytes and writes its pages into `obj`: the contents of a
/// shmem-backed file restored by a plugin (a memfd).
pub fn fill_object(
    images: &Images,
    shmid: u64,
    size: u64,
    obj: &File,
) -> std::result::Result<(), WriteError> {
    let plan =
        load_one(images, shmid, size.div_ceil(PAGE_SIZE) * PAGE_SIZE).map_err(WriteError::Image)?;
    let plan = ShmemPlan { size, ..plan };
    write_pages(images, &plan, obj)
}
