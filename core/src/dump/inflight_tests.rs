//! Files in flight against criu's own fds: one id per description, a socket carrying
//! itself, the depth limit.

use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    RestoreContext, TaskIds,
};
use criu_proto::images::{FdTypes, FileEntry};

use crate::dump::ctx::CoreDumpContext;
use crate::image::{ImageDir, ImageKind};

/// Pipes: counted (and, in chain mode, each puts a new pipe in flight: no end). Sockets:
/// each puts itself in flight and records the id it got.
struct Loop;

static PIPE_DUMPS: AtomicU32 = AtomicU32::new(0);
static CHAIN: AtomicBool = AtomicBool::new(false);
/// (id the socket was dumped under, id it got for itself in flight).
static SELF_IDS: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());
/// The tests share the statics above.
static SERIAL: Mutex<()> = Mutex::new(());

impl Plugin for Loop {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "loop",
            version: "0",
            priority: 300,
            api_version: API_VERSION,
        }
    }
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

impl FdHandler for Loop {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Pipe, FdTypes::Unixsk]
    }
    fn claims(&self, fd: &FdDesc) -> bool {
        fd.is_in_flight()
    }
    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        let ty = if fd.link.starts_with("pipe:") {
            PIPE_DUMPS.fetch_add(1, Ordering::SeqCst);
            if CHAIN.load(Ordering::SeqCst) {
                let (r, _w) = nix::unistd::pipe().expect("pipe");
                ctx.dump_file_in_flight(fd.pid, r.as_fd())?;
            }
            FdTypes::Pipe
        } else {
            let again = ctx.dump_file_in_flight(fd.pid, fd.file())?;
            SELF_IDS.lock().unwrap().push((id, again));
            FdTypes::Unixsk
        };
        Ok(FileEntry {
            r#type: ty as i32,
            id,
            ..Default::default()
        })
    }
    fn start_restore(
        &self,
        _: &mut dyn RestoreContext,
        _: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Err(PluginError::bad_image("files.img", "dump only"))
    }
}

static LOOP: Loop = Loop;

fn with_ctx(name: &str, f: impl FnOnce(&mut CoreDumpContext<'_>)) -> Vec<FileEntry> {
    let tmp = std::env::temp_dir().join(format!("criu-inflight-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dir = ImageDir::create(&tmp).expect("images dir");
    let me = std::process::id() as i32;
    {
        let mut ctx = CoreDumpContext::new(&dir, 0, false);
        ctx.start_plugin_states(&[&LOOP], me).expect("states");
        ctx.set_tree(vec![TaskIds {
            pid: me,
            tids: vec![me],
        }]);
        f(&mut ctx);
        ctx.finish(me).expect("finish");
    }
    let files = dir.read_all(ImageKind::Files, 0).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);
    files
}

#[test]
fn one_description_one_id_and_one_entry() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    PIPE_DUMPS.store(0, Ordering::SeqCst);
    let me = std::process::id() as i32;
    let (r, _w) = nix::unistd::pipe().unwrap();
    let files = with_ctx("dedup", |ctx| {
        let a = ctx.dump_file_in_flight(me, r.as_fd()).unwrap();
        let dup = r.try_clone().unwrap();
        let b = ctx.dump_file_in_flight(me, dup.as_fd()).unwrap();
        assert_eq!(a, b, "the same description reached twice");
        let (other, _w2) = nix::unistd::pipe().unwrap();
        assert_ne!(ctx.dump_file_in_flight(me, other.as_fd()).unwrap(), a);
        ctx.dump_pending_in_flight().unwrap();
        // Not a task of the frozen tree: refused.
        let err = ctx.dump_file_in_flight(1, r.as_fd()).unwrap_err();
        assert!(matches!(err, PluginError::Unavailable { .. }), "{err}");
    });
    assert_eq!(PIPE_DUMPS.load(Ordering::SeqCst), 2);
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn a_socket_carrying_itself_gets_its_own_id() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    SELF_IDS.lock().unwrap().clear();
    let me = std::process::id() as i32;
    let (s, _peer) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Datagram,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let files = with_ctx("self", |ctx| {
        let id = ctx.dump_file_in_flight(me, s.as_fd()).unwrap();
        ctx.dump_pending_in_flight().unwrap();
        assert_eq!(*SELF_IDS.lock().unwrap(), [(id, id)]);
    });
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    PIPE_DUMPS.store(0, Ordering::SeqCst);
    CHAIN.store(true, Ordering::SeqCst);
    let me = std::process::id() as i32;
    let (r, _w) = nix::unistd::pipe().unwrap();
    let mut err = None;
    with_ctx("depth", |ctx| {
        ctx.dump_file_in_flight(me, r.as_fd()).unwrap();
        err = ctx.dump_pending_in_flight().err();
    });
    CHAIN.store(false, Ordering::SeqCst);
    // The refusal is the source of the dump error naming the file being dumped.
    let err = err.expect("refused");
    let source = std::error::Error::source(&err).map(|s| s.to_string());
    assert!(
        source
            .as_deref()
            .is_some_and(|s| s.contains("deeper than 16")),
        "{err}: {source:?}"
    );
    assert_eq!(
        PIPE_DUMPS.load(Ordering::SeqCst),
        criu_plugin_api::MAX_IN_FLIGHT_DEPTH
    );
}
