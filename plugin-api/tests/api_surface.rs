//! The public surface of the contract, pinned: every free function by its full signature,
//! every trait by an implementation. Changing the API breaks this file, so a change is always
//! made on purpose (and comes with an [`API_VERSION`] bump).

use std::any::Any;
use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd};

use criu_plugin_api::*;
use criu_proto::images::{FdTypes, FileEntry, FownEntry};

#[test]
fn version_is_pinned() {
    // Bump together with any change below.
    assert_eq!(API_VERSION, ApiVersion { major: 0, minor: 8 });
    assert_eq!(NetworkLock::from_name("ebpf"), Some(NetworkLock::default()));
}

#[test]
// Spelling the full signatures out is the point here.
#[allow(clippy::type_complexity)]
fn free_functions() {
    let _: fn() -> Vec<&'static dyn Plugin> = builtin_plugins;
    let _: fn(&mut [&dyn Plugin]) = sort_plugins;
    let _: fn(&dyn Plugin) -> Result<(), String> = check_api_version;
    let _: for<'p> fn(&[&'p dyn Plugin]) -> Vec<FdHandlerRef<'p>> = fd_handlers;
    let _: for<'p> fn(&[&'p dyn Plugin], &FdDesc) -> Result<FdHandlerRef<'p>, PluginError> =
        find_fd_handler;
    let _: for<'p> fn(&[&'p dyn Plugin], &FileEntry) -> Result<FdHandlerRef<'p>, PluginError> =
        find_restore_handler;
    let _: fn(
        &[&'static dyn Plugin],
        &mut dyn RestoreContext,
        &[FileEntry],
    ) -> Result<FileRestore<'static>, (&'static str, PluginError)> = FileRestore::start;
    let _: fn(
        &mut FileRestore<'static>,
        &mut dyn RestoreContext,
        &FileEntry,
    ) -> Result<(OwnedFd, &'static str), PluginError> = FileRestore::open;
    let _: fn(&mut dyn DumpContext, ImageRef, &FileEntry, &[u8]) -> Result<(), PluginError> =
        write_message::<FileEntry>;
    let _: fn(&mut dyn RestoreContext, ImageRef) -> Result<Vec<FileEntry>, PluginError> =
        read_messages::<FileEntry>;
    let _: fn(&FownEntry, &str, i32) -> Result<(), PluginError> = require_no_owner;
    let _: fn(i32) -> String = fd_type_name;
    let _: fn(PluginImageKind) -> criu_proto::ImageKind = PluginImageKind::to_proto;
    let _: fn(u32) -> ImageRef = ImageRef::ghost_file;
    let _: fn(&[&dyn Plugin], DumpStage) -> bool = has_dump_hook;
    let _: fn(&[&dyn Plugin], RestoreStage) -> bool = has_restore_hook;
    let _: fn(
        &[&dyn Plugin],
        DumpStage,
        &mut dyn DumpContext,
        &mut PluginStates,
    ) -> Result<(), HookFailure> = run_dump_stage;
    let _: fn(
        &[&dyn Plugin],
        RestoreStage,
        &mut dyn RestoreContext,
        &mut PluginStates,
    ) -> Result<(), HookFailure> = run_restore_stage;
    // API 0.5: per-run plugin state, the restorers' last step, typed fdinfo fields.
    let _: fn(&[&dyn Plugin], RunKind) -> Result<PluginStates, (&'static str, PluginError)> =
        PluginStates::start;
    let _: fn(&PluginStates, &str) -> bool = PluginStates::has;
    let _: fn(&mut PluginStates, &str, &mut dyn DumpContext, fn(&mut dyn DumpContext) -> u8) -> u8 =
        PluginStates::dump_scope;
    let _: fn(
        &mut PluginStates,
        &str,
        &mut dyn RestoreContext,
        fn(&mut dyn RestoreContext) -> u8,
    ) -> u8 = PluginStates::restore_scope;
    let _: for<'a> fn(&'a mut FileRestore<'static>) -> &'a mut PluginStates = FileRestore::states;
    let _: fn(
        &mut FileRestore<'static>,
        &mut dyn RestoreContext,
        &BTreeMap<i32, Vec<TaskFd>>,
    ) -> Result<(), (&'static str, PluginError)> = FileRestore::finish;
    // API 0.6: files in flight.
    let _: fn(&FdDesc) -> bool = FdDesc::is_in_flight;
    assert_eq!(FdDesc::IN_FLIGHT, -2);
    assert_eq!(MAX_IN_FLIGHT_DEPTH, 16);
    let _: fn(RunKind) -> &'static str = RunKind::name;
    let _: fn(&str) -> Option<RunKind> = RunKind::from_name;
    let _: fn(&FdInfo, &str) -> Result<u64, PluginError> = FdInfo::parse::<u64>;
    let _: fn(&FdInfo, &str) -> Result<u64, PluginError> = FdInfo::hex::<u64>;
    let _: fn(&FdInfo, &str) -> Result<u32, PluginError> = FdInfo::octal::<u32>;
    let _: fn(&FdInfo, &str) -> Result<Vec<i64>, PluginError> = FdInfo::list::<i64>;
    let _ = InstalledFd {
        pid: 1,
        fd: 2,
        id: 3,
    };
    let _ = PluginError::BadFdInfo {
        field: "clockid".into(),
        reason: "no such line".into(),
    };
    let r: Result<u8, PluginError> = catch_hook_panic("p", || Ok(1));
    assert_eq!(r.unwrap(), 1);
    let _: for<'p> fn(&[&'p dyn Plugin], &VmaDesc) -> Option<(&'p dyn Plugin, &'p dyn VmaHandler)> =
        find_vma_handler;
    let _: fn(&VmaDesc) -> u64 = VmaDesc::len;
    let _: fn(&str) -> Option<DumpStage> = DumpStage::from_name;
    let _: fn(&str) -> Option<RestoreStage> = RestoreStage::from_name;
    assert_eq!(DumpStage::ALL.len(), 4);
    assert_eq!(RestoreStage::ALL.len(), 5);
    assert_eq!(DEFAULT_GHOST_LIMIT, 1 << 20);
}

struct Pinned;

impl Plugin for Pinned {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "pinned",
            version: "0",
            priority: i32::MAX,
            api_version: API_VERSION,
        }
    }
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        Some(self)
    }
    fn task_handler(&self) -> Option<&dyn TaskHandler> {
        Some(self)
    }
    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(Box::new(run)))
    }
}

impl VmaHandler for Pinned {
    fn vma_kinds(&self) -> &[&str] {
        &[]
    }
    fn claims_vma(&self, _: &VmaDesc) -> bool {
        false
    }
    fn dump_vma(&self, _: &mut dyn DumpContext, _: &VmaDesc) -> Result<(), PluginError> {
        Ok(())
    }
    fn restore_vma(&self, _: &mut dyn RestoreContext, _: &VmaDesc) -> Result<(), PluginError> {
        Ok(())
    }
}

impl TaskHandler for Pinned {
    fn task_state(&self) -> &[&str] {
        &[]
    }
    fn dump_task(&self, _: &mut dyn DumpContext, _: &TaskIds) -> Result<(), PluginError> {
        Ok(())
    }
    fn restore_task(&self, _: &mut dyn RestoreContext, _: &TaskIds) -> Result<(), PluginError> {
        Ok(())
    }
}

impl StageHooks for Pinned {
    fn dump_stages(&self) -> &[DumpStage] {
        &DumpStage::ALL
    }
    fn restore_stages(&self) -> &[RestoreStage] {
        &RestoreStage::ALL
    }
    fn dump_stage(&self, _: DumpStage, _: &mut dyn DumpContext) -> Result<(), PluginError> {
        Ok(())
    }
    fn restore_stage(
        &self,
        _: RestoreStage,
        _: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        Ok(())
    }
}

impl FdHandler for Pinned {
    fn fd_types(&self) -> &[FdTypes] {
        &[]
    }
    fn claims(&self, _: &FdDesc) -> bool {
        false
    }
    fn dump_file(
        &self,
        _: &mut dyn DumpContext,
        _: &FdDesc,
        _: u32,
    ) -> Result<FileEntry, PluginError> {
        Err(PluginError::bad_image("x", "pinned"))
    }
    fn restores(&self, _: &FileEntry) -> bool {
        false
    }
    fn start_restore(
        &self,
        _: &mut dyn RestoreContext,
        _: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(PinnedRestorer))
    }
}

struct PinnedRestorer;

impl FileRestorer for PinnedRestorer {
    fn open_file(
        &mut self,
        _: &mut dyn RestoreContext,
        _: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        Err(PluginError::bad_image("x", "pinned"))
    }
    fn finish(&mut self, _: &mut dyn RestoreContext, _: &[InstalledFd]) -> Result<(), PluginError> {
        Ok(())
    }
}

struct Ctx(DumpOptions, RestoreOptions, Option<PluginState>);

impl DumpContext for Ctx {
    fn write_entry(&mut self, _: ImageRef, _: &[u8], _: &[u8]) -> Result<(), PluginError> {
        Ok(())
    }
    fn write_plugin_file(&mut self, _: &str, _: &[u8]) -> Result<(), PluginError> {
        Ok(())
    }
    fn new_file_id(&mut self) -> u32 {
        0
    }
    fn memo(&self, _: &str) -> Option<u64> {
        None
    }
    fn set_memo(&mut self, _: &str, _: u64) {}
    fn options(&self) -> &DumpOptions {
        &self.0
    }
    fn tasks(&self) -> Vec<TaskIds> {
        Vec::new()
    }
    fn read_task_memory(&mut self, _: i32, _: u64, _: &mut [u8]) -> Result<(), PluginError> {
        Ok(())
    }
    fn write_task_memory(&mut self, _: i32, _: u64, _: &[u8]) -> Result<(), PluginError> {
        Ok(())
    }
    fn remote_syscall(&mut self, _: i32, _: i64, _: [u64; 6]) -> Result<i64, PluginError> {
        Ok(0)
    }
    fn dup_task_fd(&mut self, _: i32, _: i32) -> Result<OwnedFd, PluginError> {
        Err(PluginError::Unavailable {
            service: "dup_task_fd",
            why: "pinned".into(),
        })
    }
    fn file_id_of(&self, _: i32, _: i32) -> Option<u32> {
        None
    }
    fn epoll_target_is(
        &mut self,
        _: i32,
        _: i32,
        _: i32,
        _: u32,
        _: i32,
    ) -> Result<bool, PluginError> {
        Ok(false)
    }

    fn dump_shmem(&mut self, _: u64, _: BorrowedFd<'_>) -> Result<(), PluginError> {
        Ok(())
    }
    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        self.2.as_deref_mut()
    }
    fn dump_file_in_flight(&mut self, _: i32, _: BorrowedFd<'_>) -> Result<u32, PluginError> {
        Ok(1)
    }
}

impl RestoreContext for Ctx {
    fn read_image(&mut self, _: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(None)
    }
    fn read_plugin_file(&mut self, _: &str) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(None)
    }
    fn current_pid(&self) -> i32 {
        0
    }
    fn restored_pid(&self, _: i32) -> Option<i32> {
        None
    }
    fn host_pid(&self, _: i32) -> Option<i32> {
        None
    }
    fn keep_fd(&mut self, _: &str, _: OwnedFd) -> Result<(), PluginError> {
        Ok(())
    }
    fn kept_fd(&self, _: &str) -> Option<BorrowedFd<'_>> {
        None
    }
    fn options(&self) -> &RestoreOptions {
        &self.1
    }
    fn tasks(&self) -> Vec<TaskIds> {
        Vec::new()
    }
    fn read_task_memory(&mut self, _: i32, _: u64, _: &mut [u8]) -> Result<(), PluginError> {
        Ok(())
    }
    fn write_task_memory(&mut self, _: i32, _: u64, _: &[u8]) -> Result<(), PluginError> {
        Ok(())
    }
    fn remote_syscall(&mut self, _: i32, _: i64, _: [u64; 6]) -> Result<i64, PluginError> {
        Ok(0)
    }
    fn dup_task_fd(&mut self, _: i32, _: i32) -> Result<OwnedFd, PluginError> {
        Err(PluginError::Task {
            pid: 0,
            op: "pinned".into(),
            source: "pinned".into(),
        })
    }
    fn install_fd(
        &mut self,
        _: i32,
        _: BorrowedFd<'_>,
        _: i32,
        _: bool,
    ) -> Result<(), PluginError> {
        Ok(())
    }
    fn task_fds(&self, _: i32) -> Result<Vec<TaskFd>, PluginError> {
        Ok(vec![TaskFd {
            fd: 3,
            id: 1,
            fd_type: FdTypes::Eventpoll as i32,
            cloexec: true,
        }])
    }

    fn restore_shmem(&mut self, _: u64, _: u64, _: BorrowedFd<'_>) -> Result<(), PluginError> {
        Ok(())
    }
    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        self.2.as_deref_mut()
    }
    fn open_file_by_id(&mut self, id: u32) -> Result<OwnedFd, PluginError> {
        Err(PluginError::bad_image("files.img", format!("pinned {id}")))
    }
}

#[test]
fn traits_are_object_safe_and_implementable() {
    let p: &dyn Plugin = &Pinned;
    assert!(p.fd_handler().is_some());
    assert!(p.stage_hooks().is_some());
    assert!(p.vma_handler().is_some() && p.task_handler().is_some());
    let state = p.new_state(RunKind::Dump).unwrap();
    let mut c = Ctx(DumpOptions::default(), RestoreOptions::default(), state);
    let d: &mut dyn DumpContext = &mut c;
    assert_eq!(*d.state::<RunKind>().unwrap(), RunKind::Dump);
    let r: &mut dyn RestoreContext = &mut c;
    assert!(r.state::<u8>().is_err());
    let entries: Vec<FileEntry> = read_messages(&mut c, ImageRef::FILES).unwrap();
    assert!(entries.is_empty());
}

#[test]
#[allow(clippy::type_complexity)]
fn ffi_surface() {
    use criu_plugin_api::ffi::{self, FfiError};
    let _: fn(&std::path::Path) -> Result<&'static ffi::LoadedPlugin, ffi::LoadError> =
        ffi::load_plugin;
    // Error kind codes are part of the ABI: never renumbered, only added.
    let codes = [
        FfiError::OTHER,
        FfiError::FD,
        FfiError::PATH,
        FfiError::RESTORE,
        FfiError::UNSUPPORTED,
        FfiError::NO_HANDLER,
        FfiError::NO_RESTORER,
        FfiError::FILE_CHANGED,
        FfiError::GHOST_TOO_BIG,
        FfiError::BAD_IMAGE,
        FfiError::PANICKED,
        FfiError::UNAVAILABLE,
        FfiError::TASK,
        FfiError::BAD_FDINFO,
    ];
    assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    let _ = ffi::FfiInstalledFd {
        pid: 1,
        fd: 2,
        id: 3,
    };
    assert_eq!(
        ffi::ROOT_MODULE_SYMBOL,
        "_1as_0lib_1header_0root_bmodule_bloader"
    );
}
