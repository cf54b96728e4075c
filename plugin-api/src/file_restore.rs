//! The plugins' side of one restore's files: every fd handler's [`FileRestorer`], every
//! plugin's state, and the open file descriptions they restored, each opened once per
//! restore whether a task holds it or it only travels in flight
//! ([`RestoreContext::open_file_by_id`], API 0.6).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;

use criu_proto::images::FileEntry;

use crate::state::{OpenById, restore_scope_with};
use crate::{
    FdHandlerRef, FileRestorer, InstalledFd, Plugin, PluginError, PluginStates, RestoreContext,
    RunKind, TaskFd, catch_hook_panic, fd_handlers, fd_type_name,
};

/// One fd handler and its restorer; `None` while the restorer is running (taken out for
/// the call, so that the call can open other plugins' files).
type Slot<'p> = (FdHandlerRef<'p>, Option<Box<dyn FileRestorer>>);

/// The plugins' side of one restore: every plugin's state for it ([`PluginStates`]) and every
/// fd handler's [`FileRestorer`], in asking order. Kept until the restore is over: the
/// restorers' [`FileRestorer::finish`] runs just before the tree resumes, and dropping this
/// drops the restorers and the states.
///
/// It opens each `files.img` entry once ([`FileRestore::open`] hands out duplicates of one
/// description), whether the core asks for it for a task's fd or a restorer asks for it
/// with [`RestoreContext::open_file_by_id`] (API 0.6) during its
/// [`FileRestorer::open_file`] or [`FileRestorer::finish`]. The descriptions are released
/// (criu's copies closed) at the end of [`FileRestore::finish`].
pub struct FileRestore<'p> {
    restorers: Vec<Slot<'p>>,
    states: PluginStates,
    /// Every `files.img` entry, by id (for [`RestoreContext::open_file_by_id`]).
    entries: HashMap<u32, FileEntry>,
    /// Which restorer (index) opened which file id.
    opened: HashMap<u32, usize>,
    /// The description of each file id opened so far, until [`FileRestore::finish`].
    descriptions: HashMap<u32, OwnedFd>,
    /// [`FileRestore::finish`] ran: no more opens.
    released: bool,
}

impl std::fmt::Debug for FileRestore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.restorers.iter().map(|(h, _)| h.plugin.info().name))
            .finish()
    }
}

impl<'p> FileRestore<'p> {
    /// Creates every plugin's restore state ([`crate::Plugin::new_state`]), then calls
    /// [`crate::FdHandler::start_restore`] of every fd handler of `plugins` (sorted), with
    /// all of `files.img`. Stops at the first error, returned with the plugin's name.
    pub fn start(
        plugins: &[&'p dyn Plugin],
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Self, (&'static str, PluginError)> {
        let mut states = PluginStates::start(plugins, RunKind::Restore)?;
        let mut restorers = Vec::new();
        for h in fd_handlers(plugins) {
            let name = h.plugin.info().name;
            let r = states
                .restore_scope(name, ctx, |ctx| h.handler.start_restore(ctx, entries))
                .map_err(|e| (name, e))?;
            restorers.push((h, Some(r)));
        }
        Ok(FileRestore {
            restorers,
            states,
            entries: entries.iter().map(|e| (e.id, e.clone())).collect(),
            opened: HashMap::new(),
            descriptions: HashMap::new(),
            released: false,
        })
    }

    /// A duplicate of the description of `entry`, opened now by the first handler restoring
    /// it unless an earlier call (or a restorer's [`RestoreContext::open_file_by_id`])
    /// opened it already; with the name of the plugin that opened it. No handler:
    /// [`PluginError::NoRestorer`].
    pub fn open(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<(OwnedFd, &'static str), PluginError> {
        let id = entry.id;
        if self.released {
            return Err(PluginError::Unavailable {
                service: "file restore",
                why: format!("file id {id}: the restore's files were released (after finish)"),
            });
        }
        if let (Some(fd), Some(&i)) = (self.descriptions.get(&id), self.opened.get(&id)) {
            return Ok((dup(fd, entry)?, self.restorers[i].0.plugin.info().name));
        }
        let i = self
            .restorers
            .iter()
            .position(|(h, _)| h.handler.restores(entry))
            .ok_or_else(|| PluginError::NoRestorer {
                fd_type: fd_type_name(entry.r#type),
                id,
            })?;
        let name = self.restorers[i].0.plugin.info().name;
        if self.restorers[i].1.is_none() {
            return Err(PluginError::Unavailable {
                service: "open_file_by_id",
                why: format!(
                    "file id {id} ({}) is restored by plugin {name}, whose restorer is running \
                     this call: open it in the plugin's own code",
                    fd_type_name(entry.r#type)
                ),
            });
        }
        let fd = self.call(i, ctx, |r, ctx| r.open_file(ctx, entry))?;
        let copy = dup(&fd, entry)?;
        self.opened.insert(id, i);
        self.descriptions.insert(id, fd);
        Ok((copy, name))
    }

    /// The plugins' states for this restore, for the host's other calls into the plugins
    /// (stage hooks, VMA and task handlers). (API 0.5)
    pub fn states(&mut self) -> &mut PluginStates {
        &mut self.states
    }

    /// Every restorer's [`FileRestorer::finish`], in asking order, each with the fds of
    /// `task_fds` (every restored task's fds, by restored pid) whose file id it opened.
    /// Stops at the first error, returned with the plugin's name. Then criu's copies of the
    /// restored descriptions are closed. (API 0.5)
    pub fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        task_fds: &BTreeMap<i32, Vec<TaskFd>>,
    ) -> Result<(), (&'static str, PluginError)> {
        let mut per: Vec<Vec<InstalledFd>> = vec![Vec::new(); self.restorers.len()];
        for (&pid, fds) in task_fds {
            for f in fds {
                if let Some(&i) = self.opened.get(&f.id) {
                    per[i].push(InstalledFd {
                        pid,
                        fd: f.fd,
                        id: f.id,
                    });
                }
            }
        }
        let r = per
            .into_iter()
            .enumerate()
            .try_for_each(|(i, mut installed)| {
                installed.sort();
                let name = self.restorers[i].0.plugin.info().name;
                tracing::debug!(plugin = name, fds = installed.len(), "file restorer finish");
                self.call(i, ctx, |r, ctx| {
                    catch_hook_panic(name, || r.finish(ctx, &installed))
                })
                .map_err(|e| (name, e))
            });
        self.descriptions.clear();
        self.released = true;
        r
    }

    /// Runs `f` on restorer `i` with its plugin's state, the restorer and the state taken
    /// out of their slots for the call so that `f` may open other plugins' files through
    /// [`RestoreContext::open_file_by_id`].
    fn call<R>(
        &mut self,
        i: usize,
        ctx: &mut dyn RestoreContext,
        f: impl FnOnce(&mut dyn FileRestorer, &mut dyn RestoreContext) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let name = self.restorers[i].0.plugin.info().name;
        let Some(mut restorer) = self.restorers[i].1.take() else {
            return Err(PluginError::Unavailable {
                service: "file restorer",
                why: format!("plugin {name}'s restorer is already running"),
            });
        };
        let mut state = self.states.take(name);
        let r = restore_scope_with(
            state.as_deref_mut().map(|s| s as &mut (dyn Any + Send)),
            ctx,
            Some(self as &mut dyn OpenById),
            |ctx| f(restorer.as_mut(), ctx),
        );
        self.states.put(name, state);
        self.restorers[i].1 = Some(restorer);
        r
    }
}

impl OpenById for FileRestore<'_> {
    fn open_by_id(
        &mut self,
        ctx: &mut dyn RestoreContext,
        id: u32,
    ) -> Result<OwnedFd, PluginError> {
        let Some(entry) = self.entries.get(&id).cloned() else {
            return Err(PluginError::bad_image(
                "files.img",
                format!("no entry with file id {id} (asked for by a plugin: a file in flight?)"),
            ));
        };
        self.open(ctx, &entry).map(|(fd, _)| fd)
    }
}

/// A duplicate (close-on-exec) of a restored description.
fn dup(fd: &OwnedFd, entry: &FileEntry) -> Result<OwnedFd, PluginError> {
    fd.try_clone().map_err(|source| PluginError::Restore {
        id: entry.id,
        what: fd_type_name(entry.r#type),
        op: "dup",
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicU32, Ordering};

    use criu_proto::images::FdTypes;

    use super::*;
    use crate::testing::MemoryImages;
    use crate::{API_VERSION, DumpContext, FdDesc, FdHandler, PluginInfo};

    /// "pipes": opens a pipe per entry (counting opens). "socks": its restorer opens the
    /// pipe entry named by its own entry's `id + 100` through `open_file_by_id`, after
    /// (entry 7) its own entry 8 the same way.
    struct Fake(&'static str, FdTypes);

    static PIPE_OPENS: AtomicU32 = AtomicU32::new(0);

    impl Plugin for Fake {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: self.0,
                version: "0",
                priority: 100,
                api_version: API_VERSION,
            }
        }
        fn fd_handler(&self) -> Option<&dyn crate::FdHandler> {
            Some(self)
        }
        fn new_state(&self, _: RunKind) -> Result<Option<crate::PluginState>, PluginError> {
            Ok(Some(Box::new(self.0)))
        }
    }

    impl FdHandler for Fake {
        fn fd_types(&self) -> &[FdTypes] {
            std::slice::from_ref(&self.1)
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
            Err(PluginError::bad_image("files.img", "not at dump"))
        }
        fn start_restore(
            &self,
            _: &mut dyn RestoreContext,
            _: &[FileEntry],
        ) -> Result<Box<dyn FileRestorer>, PluginError> {
            Ok(Box::new(FakeRestorer(self.0, Vec::new())))
        }
    }

    /// The fds `open_file_by_id` gave the restorer (kept to compare descriptions).
    struct FakeRestorer(&'static str, Vec<OwnedFd>);

    impl FileRestorer for FakeRestorer {
        fn open_file(
            &mut self,
            ctx: &mut dyn RestoreContext,
            entry: &FileEntry,
        ) -> Result<OwnedFd, PluginError> {
            // Each plugin sees its own state, also while another plugin's call is running.
            assert_eq!(*ctx.state::<&str>()?, self.0);
            if self.0 == "pipes" {
                PIPE_OPENS.fetch_add(1, Ordering::SeqCst);
                let (r, _w) = nix::unistd::pipe().expect("pipe");
                return Ok(r);
            }
            if entry.id == 7 {
                ctx.open_file_by_id(8)?;
            }
            let carried = ctx.open_file_by_id(entry.id + 100)?;
            self.1.push(carried);
            Ok(std::fs::File::open("/dev/null").expect("null").into())
        }
        fn finish(
            &mut self,
            ctx: &mut dyn RestoreContext,
            _: &[InstalledFd],
        ) -> Result<(), PluginError> {
            if self.0 == "socks" {
                // Opened in open_file already: the same description again.
                let again = ctx.open_file_by_id(101)?;
                assert_eq!(ino(&again), ino(&self.1[0]));
            }
            Ok(())
        }
    }

    fn ino(fd: &OwnedFd) -> u64 {
        nix::sys::stat::fstat(fd.as_fd()).expect("fstat").st_ino
    }

    fn entry(id: u32, t: FdTypes) -> FileEntry {
        FileEntry {
            r#type: t as i32,
            id,
            ..Default::default()
        }
    }

    static PIPES: Fake = Fake("pipes", FdTypes::Pipe);
    static SOCKS: Fake = Fake("socks", FdTypes::Unixsk);

    #[test]
    fn a_restorer_opens_other_entries_once_per_restore() {
        let plugins: [&dyn Plugin; 2] = [&SOCKS, &PIPES];
        let entries = [
            entry(1, FdTypes::Unixsk),
            entry(7, FdTypes::Unixsk),
            entry(8, FdTypes::Unixsk),
            entry(101, FdTypes::Pipe),
        ];
        let mut ctx = MemoryImages::new(0);
        let mut files = FileRestore::start(&plugins, &mut ctx, &entries).unwrap();
        // Entry 1's restorer opens pipe 101 (only in flight so far)...
        files.open(&mut ctx, &entries[0]).unwrap();
        assert_eq!(PIPE_OPENS.load(Ordering::SeqCst), 1);
        // ...and a task holding 101 later gets that same description.
        let (task_fd, by) = files.open(&mut ctx, &entries[3]).unwrap();
        assert_eq!(by, "pipes");
        assert_eq!(PIPE_OPENS.load(Ordering::SeqCst), 1, "opened once");
        // Its own entries cannot be opened through the core while its restorer runs.
        let err = files.open(&mut ctx, &entries[1]).unwrap_err();
        assert!(
            matches!(&err, PluginError::Unavailable { why, .. } if why.contains("file id 8") && why.contains("socks")),
            "{err}"
        );
        // An id missing from files.img is a bad image naming it.
        let bad = FileEntry {
            id: 9,
            ..entries[0].clone()
        };
        let err = files.open(&mut ctx, &bad).unwrap_err();
        assert!(
            err.to_string().contains("files.img") && err.to_string().contains("109"),
            "{err}"
        );
        // finish can open by id too; afterwards criu's copies are gone.
        files.finish(&mut ctx, &BTreeMap::new()).unwrap();
        let err = files.open(&mut ctx, &entries[3]).unwrap_err();
        assert!(err.to_string().contains("released"), "{err}");
        drop(task_fd);
    }
}
