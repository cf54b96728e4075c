//! Both sides of the boundary in one process: a plugin's root module built here (as
//! `export_plugin!` builds it in a `.so`) and wrapped by the host adapter, driven with the
//! in-memory images of [`crate::testing`].

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use criu_proto::images::{FdTypes, FileEntry, PipeEntry};

use super::guest::{ExportedPlugin, module};
use super::host::from_module;
use super::load::LoadError;
use crate::testing::{MemoryImages, own_fd_desc};
use crate::{
    API_VERSION, ApiVersion, DumpContext, FdDesc, FdHandler, FileRestorer, ImageRef, Plugin,
    PluginError, PluginInfo, RestoreContext,
};

struct Probe;

impl Plugin for Probe {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "probe",
            version: "7.0.0",
            priority: 42,
            api_version: API_VERSION,
        }
    }
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

impl FdHandler for Probe {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Pipe]
    }
    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link.starts_with("pipe:")
    }
    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        if fd.fd == 999 {
            panic!("probe panic on {}", fd.describe());
        }
        if fd.fd == 998 {
            return Err(PluginError::Unsupported {
                resource: fd.describe(),
                pid: fd.pid,
                hint: "probe refuses".into(),
            });
        }
        let seen = ctx.memo("probe:n").unwrap_or(0);
        ctx.set_memo("probe:n", seen + 1);
        let pipe_id = ctx.new_file_id();
        ctx.write_entry(ImageRef::PIPES_DATA, &[8, 1], b"tail")?;
        ctx.write_plugin_file("probe.bin", b"own format")?;
        if let Some(key) = &ctx.options().secret_key {
            let key = key.to_string_lossy().into_owned();
            ctx.write_plugin_file("probe-key.txt", key.as_bytes())?;
        }
        let o = ctx.options();
        let later = format!(
            "{} {} {} {} {} {} {:?}",
            o.tcp_established,
            o.skip_in_flight,
            o.file_locks,
            o.ext_unix_sk,
            o.leave_running,
            o.network_lock,
            o.external
        );
        ctx.write_plugin_file("probe-options.txt", later.as_bytes())?;
        let flags = fd.fdinfo.file_flags() | (ctx.options().ghost_limit as u32 & 0xf0_0000);
        Ok(FileEntry {
            r#type: FdTypes::Pipe as i32,
            id,
            pipe: Some(PipeEntry {
                id,
                pipe_id: pipe_id * 100 + seen as u32,
                flags,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        if let Some(key) = &ctx.options().secret_key {
            return Err(PluginError::Unsupported {
                resource: "probe".into(),
                pid: 0,
                hint: format!("key {}", key.display()),
            });
        }
        let o = ctx.options();
        if o.tcp_close {
            return Err(PluginError::Unsupported {
                resource: "probe".into(),
                pid: 0,
                hint: format!(
                    "{} {} {} {} {:?}",
                    o.tcp_established, o.file_locks, o.ext_unix_sk, o.network_lock, o.external
                ),
            });
        }
        let data = ctx.read_image(ImageRef::PIPES_DATA)?.unwrap_or_default();
        let own = ctx.read_plugin_file("probe.bin")?.unwrap_or_default();
        let null = std::fs::File::open("/dev/null").map_err(|source| PluginError::Path {
            path: "/dev/null".into(),
            op: "open",
            source,
        })?;
        ctx.keep_fd("probe:null", null.into())?;
        Ok(Box::new(ProbeRestorer {
            sizes: (data.len(), own.len(), entries.len()),
        }))
    }
}

struct ProbeRestorer {
    sizes: (usize, usize, usize),
}

impl FileRestorer for ProbeRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        if entry.id == 666 {
            panic!("probe restore panic");
        }
        assert_eq!(
            self.sizes,
            (2 * (4 + 2 + 4), 10, 1),
            "what start_restore saw"
        );
        assert_eq!(ctx.restored_pid(12), Some(12));
        // API 0.8: the host's answer, not the image pid.
        assert_eq!(ctx.host_pid(12), Some(4012));
        let kept = ctx.kept_fd("probe:null").expect("kept fd");
        kept.try_clone_to_owned()
            .map_err(|source| PluginError::Restore {
                id: entry.id,
                what: "kept".into(),
                op: "dup",
                source,
            })
    }
}

struct ProbeExport;
impl ExportedPlugin for ProbeExport {
    fn plugin() -> &'static dyn Plugin {
        static P: Probe = Probe;
        &P
    }
}

fn pipe_desc(fd: i32) -> (FdDesc, OwnedFd) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut desc = own_fd_desc(r.as_fd()).unwrap();
    desc.fd = fd;
    (desc, w)
}

#[test]
fn symbol_matches_abi_stable() {
    assert_eq!(
        super::ROOT_MODULE_SYMBOL,
        abi_stable::library::ROOT_MODULE_LOADER_NAME
    );
}

#[test]
fn dump_and_restore_cross_the_boundary() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    assert_eq!(p.path(), Path::new("libprobe.so"));
    let info = p.info();
    assert_eq!(
        (info.name, info.version, info.priority),
        ("probe", "7.0.0", 42)
    );
    let h = p.fd_handler().expect("fd handler");
    assert_eq!(h.fd_types(), [FdTypes::Pipe]);
    let (desc, _w) = pipe_desc(5);
    assert!(h.claims(&desc));
    let mut imgs = MemoryImages::new(3);
    let e = h.dump_file(&mut imgs, &desc, 9).unwrap();
    let e2 = h.dump_file(&mut imgs, &desc, 10).unwrap();
    let pipe = e.pipe.unwrap();
    assert_eq!((e.id, pipe.pipe_id), (9, 400), "new_file_id and memo");
    assert_eq!(e2.pipe.unwrap().pipe_id, 501);
    assert_eq!(pipe.flags & 0xf0_0000, 0x10_0000, "ghost limit option");
    // [len][msg][tail] per entry (CRIU framing, done by the context).
    assert_eq!(
        imgs.image(ImageRef::PIPES_DATA).unwrap().len(),
        2 * (4 + 2 + 4)
    );
    assert_eq!(imgs.plugin_files["probe.bin"], b"own format");
    assert!(h.restores(&e));

    let mut r = h
        .start_restore(&mut imgs, std::slice::from_ref(&e))
        .unwrap();
    imgs.host_pids.insert(12, 4012);
    let fd = r.open_file(&mut imgs, &e).unwrap();
    let link = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    }))
    .unwrap();
    assert_eq!(link, Path::new("/dev/null"));
}

#[test]
fn the_secret_key_option_crosses_the_boundary() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    let h = p.fd_handler().expect("fd handler");
    let (desc, _w) = pipe_desc(5);
    let mut imgs = MemoryImages::new(3);
    h.dump_file(&mut imgs, &desc, 9).unwrap();
    assert!(!imgs.plugin_files.contains_key("probe-key.txt"));
    imgs.dump_options.secret_key = Some("/etc/criu/key".into());
    let e = h.dump_file(&mut imgs, &desc, 10).unwrap();
    assert_eq!(imgs.plugin_files["probe-key.txt"], b"/etc/criu/key");
    imgs.restore_options.secret_key = Some("/k2".into());
    let err = h
        .start_restore(&mut imgs, std::slice::from_ref(&e))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("key /k2"), "{err}");
}

#[test]
fn the_api_0_7_options_cross_the_boundary() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    let h = p.fd_handler().expect("fd handler");
    let (desc, _w) = pipe_desc(5);
    let mut imgs = MemoryImages::new(3);
    h.dump_file(&mut imgs, &desc, 9).unwrap();
    assert_eq!(
        imgs.plugin_files["probe-options.txt"],
        b"false false false false false ebpf []"
    );
    imgs.dump_options.tcp_established = true;
    imgs.dump_options.skip_in_flight = true;
    imgs.dump_options.file_locks = true;
    imgs.dump_options.ext_unix_sk = true;
    imgs.dump_options.leave_running = true;
    imgs.dump_options.network_lock = crate::NetworkLock::Iptables;
    imgs.dump_options.external = vec!["unix[7]".into(), "mnt[m]:/x".into()];
    let e = h.dump_file(&mut imgs, &desc, 10).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&imgs.plugin_files["probe-options.txt"]),
        r#"true true true true true iptables ["unix[7]", "mnt[m]:/x"]"#
    );
    imgs.restore_options.tcp_close = true;
    imgs.restore_options.tcp_established = true;
    imgs.restore_options.network_lock = crate::NetworkLock::Skip;
    imgs.restore_options.external = vec!["veth[a]:b".into()];
    let err = h
        .start_restore(&mut imgs, std::slice::from_ref(&e))
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains(r#"true false false skip ["veth[a]:b"]"#),
        "{err}"
    );
}

#[test]
fn errors_come_back_typed() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    let h = p.fd_handler().unwrap();
    let (desc, _w) = pipe_desc(998);
    let err = h
        .dump_file(&mut MemoryImages::new(1), &desc, 1)
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Unsupported { hint, .. } if hint == "probe refuses"),
        "{err:?}"
    );
    // Still usable after an ordinary error.
    assert!(h.claims(&desc));
}

#[test]
fn a_panic_is_an_error_and_disables_the_plugin() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    let h = p.fd_handler().unwrap();
    let (desc, _w) = pipe_desc(999);
    let err = h
        .dump_file(&mut MemoryImages::new(1), &desc, 1)
        .unwrap_err();
    match &err {
        PluginError::Panicked { plugin, message } => {
            assert_eq!(plugin, "probe");
            assert!(message.contains("probe panic on fd 999"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let (ok_desc, _w2) = pipe_desc(4);
    assert!(!h.claims(&ok_desc), "a panicked plugin claims nothing more");
    assert!(h.start_restore(&mut MemoryImages::new(1), &[]).is_err());
}

#[test]
fn a_panic_in_a_restorer_is_an_error() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    let h = p.fd_handler().unwrap();
    let mut imgs = MemoryImages::new(1);
    let mut r = h.start_restore(&mut imgs, &[]).unwrap();
    let entry = FileEntry {
        r#type: FdTypes::Pipe as i32,
        id: 666,
        ..Default::default()
    };
    let err = r.open_file(&mut imgs, &entry).unwrap_err();
    assert!(matches!(err, PluginError::Panicked { .. }), "{err:?}");
    assert!(r.open_file(&mut imgs, &entry).is_err(), "disabled");
}

struct Future;
impl Plugin for Future {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "future",
            version: "9",
            priority: 1,
            api_version: ApiVersion {
                major: API_VERSION.major + 1,
                minor: 0,
            },
        }
    }
}
struct FutureExport;
impl ExportedPlugin for FutureExport {
    fn plugin() -> &'static dyn Plugin {
        static P: Future = Future;
        &P
    }
}

#[test]
fn another_api_major_is_refused_naming_both_versions() {
    let err = from_module(module::<FutureExport>(), Path::new("/x/libfuture.so")).unwrap_err();
    assert!(matches!(err, LoadError::ApiVersion { .. }));
    let msg = err.to_string();
    let theirs = format!("plugin API {}.0", API_VERSION.major + 1);
    let ours = format!("plugin API {API_VERSION}");
    assert!(
        msg.contains("/x/libfuture.so")
            && msg.contains(&format!("was built for {theirs}, this criu speaks {ours}"))
            && msg.ends_with("the plugin is newer than this criu; upgrade criu"),
        "{msg}"
    );
}

/// A plugin built against the next minor plugin API (fields this criu does not know): it
/// is newer than criu, so the advice is to upgrade criu, not to rebuild the plugin.
struct NextMinor;
impl Plugin for NextMinor {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "next",
            version: "1.2.3",
            priority: 1,
            api_version: ApiVersion {
                major: API_VERSION.major,
                minor: API_VERSION.minor + 1,
            },
        }
    }
}
struct NextMinorExport;
impl ExportedPlugin for NextMinorExport {
    fn plugin() -> &'static dyn Plugin {
        static P: NextMinor = NextMinor;
        &P
    }
}

#[test]
fn a_plugin_newer_than_criu_says_upgrade_criu() {
    let err = from_module(module::<NextMinorExport>(), Path::new("/x/libnext.so")).unwrap_err();
    let msg = err.to_string();
    let theirs = format!("{}.{}", API_VERSION.major, API_VERSION.minor + 1);
    assert_eq!(
        msg,
        format!(
            "plugin next 1.2.3 (/x/libnext.so) was built for plugin API {theirs}, this criu \
             speaks plugin API {API_VERSION}: the plugin is newer than this criu; upgrade criu"
        )
    );
    assert!(!msg.contains("rebuild"), "{msg}");
}

/// Stage hooks through the boundary, using every context service of API 0.3.
struct Hooks;

impl Plugin for Hooks {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "hooks",
            version: "1",
            priority: 5,
            api_version: API_VERSION,
        }
    }
    fn stage_hooks(&self) -> Option<&dyn crate::StageHooks> {
        Some(self)
    }
}

impl crate::StageHooks for Hooks {
    fn dump_stages(&self) -> &[crate::DumpStage] {
        &[crate::DumpStage::AfterFreeze, crate::DumpStage::AfterDump]
    }
    fn restore_stages(&self) -> &[crate::RestoreStage] {
        &[crate::RestoreStage::BeforeResume]
    }
    fn dump_stage(
        &self,
        stage: crate::DumpStage,
        ctx: &mut dyn DumpContext,
    ) -> Result<(), PluginError> {
        if stage == crate::DumpStage::AfterDump {
            panic!("hooks panic after dump");
        }
        let tasks = ctx.tasks();
        let t = &tasks[0];
        let mut magic = [0u8; 8];
        ctx.read_task_memory(t.pid, 0x1000, &mut magic)?;
        let pid = ctx.remote_syscall(t.tids[1], libc::SYS_getpid, [1, 2, 3, 4, 5, 6])?;
        let fd = ctx.dup_task_fd(t.pid, 0)?;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            fd.as_raw_fd()
        }))
        .map_err(|e| {
            PluginError::path(
                "/proc/self/fd",
                "readlink",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        })?;
        let text = format!(
            "{} {pid} {}",
            u64::from_le_bytes(magic),
            !link.as_os_str().is_empty()
        );
        ctx.write_plugin_file("hooks.txt", text.as_bytes())?;
        // Outside the tree: the host's error comes back typed.
        match ctx.read_task_memory(1_000_000, 0, &mut magic) {
            Err(PluginError::Unavailable {
                service: "task memory",
                ..
            }) => Ok(()),
            other => panic!("{other:?}"),
        }
    }
    fn restore_stage(
        &self,
        _: crate::RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let saved = ctx.read_plugin_file("hooks.txt")?.unwrap_or_default();
        let t = ctx.tasks()[0].clone();
        ctx.write_task_memory(t.pid, 0x1004, &saved[..4])?;
        let null = std::fs::File::open("/dev/null").map_err(|source| PluginError::Path {
            path: "/dev/null".into(),
            op: "open",
            source,
        })?;
        ctx.install_fd(t.pid, null.as_fd(), 7, true)?;
        match ctx.write_task_memory(t.pid, 0x9000, b"x") {
            Err(PluginError::Task { pid, .. }) if pid == t.pid => Ok(()),
            other => panic!("{other:?}"),
        }
    }
}

struct HooksExport;
impl ExportedPlugin for HooksExport {
    fn plugin() -> &'static dyn Plugin {
        static P: Hooks = Hooks;
        &P
    }
}

#[test]
fn stage_hooks_and_task_services_cross_the_boundary() {
    use crate::{DumpStage, RestoreStage, TaskIds};
    let p = from_module(module::<HooksExport>(), Path::new("libhooks.so")).unwrap();
    assert!(p.fd_handler().is_none());
    let h = p.stage_hooks().expect("stage hooks");
    assert_eq!(
        h.dump_stages(),
        [DumpStage::AfterFreeze, DumpStage::AfterDump]
    );
    assert_eq!(h.restore_stages(), [RestoreStage::BeforeResume]);
    let mut imgs = MemoryImages::new(1);
    imgs.tasks = vec![TaskIds {
        pid: 40,
        tids: vec![40, 41],
    }];
    imgs.memory = vec![(40, 0x1000, 0x1122_3344_5566_7788u64.to_le_bytes().to_vec())];
    h.dump_stage(DumpStage::AfterFreeze, &mut imgs).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&imgs.plugin_files["hooks.txt"]),
        format!("{} 40 true", 0x1122_3344_5566_7788u64)
    );
    assert_eq!(imgs.syscalls, [(41, libc::SYS_getpid, [1, 2, 3, 4, 5, 6])]);

    h.restore_stage(RestoreStage::BeforeResume, &mut imgs)
        .unwrap();
    assert_eq!(&imgs.memory[0].2[4..8], b"1234");
    let (pid, fd, target, cloexec) = &imgs.installed[0];
    assert_eq!((*pid, *target, *cloexec), (40, 7, true));
    let link = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    }))
    .unwrap();
    assert_eq!(link, Path::new("/dev/null"));

    // A panic in a hook is an error naming the plugin, and disables it.
    let err = h.dump_stage(DumpStage::AfterDump, &mut imgs).unwrap_err();
    assert!(
        matches!(&err, PluginError::Panicked { plugin, message } if plugin == "hooks" && message.contains("after dump")),
        "{err:?}"
    );
    assert!(
        h.restore_stage(RestoreStage::BeforeResume, &mut imgs)
            .is_err()
    );
}

#[test]
fn plugin_without_hooks_has_no_stage_capability() {
    let p = from_module(module::<ProbeExport>(), Path::new("libprobe.so")).unwrap();
    assert!(p.stage_hooks().is_none());
    assert!(super::guest::capability_tokens(&Probe).is_empty());
    assert_eq!(
        super::guest::capability_tokens(&Hooks),
        [
            "dump-stage:after-freeze",
            "dump-stage:after-dump",
            "restore-stage:before-resume"
        ]
    );
}

/// A VMA handler and a task handler through the boundary.
struct Areas;

impl Plugin for Areas {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "areas",
            version: "1",
            priority: 6,
            api_version: API_VERSION,
        }
    }
    fn vma_handler(&self) -> Option<&dyn crate::VmaHandler> {
        Some(self)
    }
    fn task_handler(&self) -> Option<&dyn crate::TaskHandler> {
        Some(self)
    }
}

impl crate::VmaHandler for Areas {
    fn vma_kinds(&self) -> &[&str] {
        &["secretmem"]
    }
    fn claims_vma(&self, vma: &crate::VmaDesc) -> bool {
        if vma.name == "boom" {
            panic!("claims_vma panics");
        }
        vma.name == "secretmem"
    }
    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &crate::VmaDesc) -> Result<(), PluginError> {
        let mut data = vec![0u8; vma.len() as usize];
        ctx.read_task_memory(vma.pid, vma.start, &mut data)?;
        ctx.write_plugin_file("areas.bin", &data)
    }
    fn restore_vma(
        &self,
        ctx: &mut dyn RestoreContext,
        vma: &crate::VmaDesc,
    ) -> Result<(), PluginError> {
        let data = ctx.read_plugin_file("areas.bin")?.unwrap_or_default();
        let reversed: Vec<u8> = data.iter().rev().copied().collect();
        ctx.write_task_memory(vma.pid, vma.start, &reversed)
    }
}

impl crate::TaskHandler for Areas {
    fn task_state(&self) -> &[&str] {
        &["shadow stack"]
    }
    fn dump_task(
        &self,
        ctx: &mut dyn DumpContext,
        task: &crate::TaskIds,
    ) -> Result<(), PluginError> {
        for &tid in &task.tids {
            ctx.remote_syscall(tid, libc::SYS_getpid, [0; 6])?;
        }
        Ok(())
    }
    fn restore_task(
        &self,
        _: &mut dyn RestoreContext,
        task: &crate::TaskIds,
    ) -> Result<(), PluginError> {
        Err(PluginError::Unsupported {
            resource: "shadow stack".into(),
            pid: task.pid,
            hint: "areas refuses".into(),
        })
    }
}

struct AreasExport;
impl ExportedPlugin for AreasExport {
    fn plugin() -> &'static dyn Plugin {
        static P: Areas = Areas;
        &P
    }
}

#[test]
fn vma_and_task_handlers_cross_the_boundary() {
    use crate::{TaskIds, VmaDesc};
    let p = from_module(module::<AreasExport>(), Path::new("libareas.so")).unwrap();
    assert!(p.stage_hooks().is_none() && p.fd_handler().is_none());
    let v = p.vma_handler().expect("VMA handler");
    assert_eq!(v.vma_kinds(), ["secretmem"]);
    let t = p.task_handler().expect("task handler");
    assert_eq!(t.task_state(), ["shadow stack"]);
    let vma = VmaDesc {
        pid: 40,
        start: 0x2000,
        end: 0x2004,
        prot: 3,
        flags: 0x22,
        pgoff: 0,
        name: "secretmem".into(),
    };
    assert!(v.claims_vma(&vma));
    assert!(!v.claims_vma(&VmaDesc {
        name: "[heap]".into(),
        ..vma.clone()
    }));
    let mut imgs = MemoryImages::new(1);
    let task = TaskIds {
        pid: 40,
        tids: vec![40, 41],
    };
    imgs.tasks = vec![task.clone()];
    imgs.memory = vec![(40, 0x2000, b"abcd".to_vec())];
    v.dump_vma(&mut imgs, &vma).unwrap();
    assert_eq!(imgs.plugin_files["areas.bin"], b"abcd");
    v.restore_vma(&mut imgs, &vma).unwrap();
    assert_eq!(imgs.memory[0].2, b"dcba");
    t.dump_task(&mut imgs, &task).unwrap();
    assert_eq!(imgs.syscalls.len(), 2);
    let err = t.restore_task(&mut imgs, &task).unwrap_err();
    assert!(
        matches!(&err, PluginError::Unsupported { pid: 40, hint, .. } if hint == "areas refuses"),
        "{err:?}"
    );
    // A panicking claims_vma answers "mine" (the dump then fails in dump_vma, disabled).
    let boom = VmaDesc {
        name: "boom".into(),
        ..vma
    };
    assert!(v.claims_vma(&boom));
    assert!(matches!(
        v.dump_vma(&mut imgs, &boom),
        Err(PluginError::Plugin { .. })
    ));
}
