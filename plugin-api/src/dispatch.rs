//! How the core picks the plugin for an fd (dump) or a `files.img` entry (restore).

use criu_proto::images::FileEntry;

use crate::{FdDesc, FdHandler, Plugin, PluginError, fd_type_name};

/// A plugin together with its fd handler, as the dispatch functions return it.
#[derive(Clone, Copy)]
pub struct FdHandlerRef<'p> {
    /// The plugin (for its name in logs and the inventory).
    pub plugin: &'p dyn Plugin,
    /// Its fd handler.
    pub handler: &'p dyn FdHandler,
}

impl std::fmt::Debug for FdHandlerRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FdHandlerRef")
            .field(&self.plugin.info().name)
            .finish()
    }
}

/// Every plugin's fd handler, in the order of `plugins` (already sorted by priority).
pub fn fd_handlers<'p>(plugins: &[&'p dyn Plugin]) -> Vec<FdHandlerRef<'p>> {
    plugins
        .iter()
        .filter_map(|&plugin| {
            plugin
                .fd_handler()
                .map(|handler| FdHandlerRef { plugin, handler })
        })
        .collect()
}

/// The first plugin (in `plugins` order) claiming `fd`, or
/// [`PluginError::NoHandler`] naming pid, fd and link.
pub fn find_fd_handler<'p>(
    plugins: &[&'p dyn Plugin],
    fd: &FdDesc,
) -> Result<FdHandlerRef<'p>, PluginError> {
    fd_handlers(plugins)
        .into_iter()
        .find(|h| h.handler.claims(fd))
        .ok_or_else(|| PluginError::NoHandler {
            pid: fd.pid,
            fd: fd.fd,
            link: fd.link.clone(),
        })
}

/// The first plugin (in `plugins` order) restoring `entry`, or
/// [`PluginError::NoRestorer`] naming the entry's fd type.
pub fn find_restore_handler<'p>(
    plugins: &[&'p dyn Plugin],
    entry: &FileEntry,
) -> Result<FdHandlerRef<'p>, PluginError> {
    fd_handlers(plugins)
        .into_iter()
        .find(|h| h.handler.restores(entry))
        .ok_or_else(|| PluginError::NoRestorer {
            fd_type: fd_type_name(entry.r#type),
            id: entry.id,
        })
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use criu_proto::images::FdTypes;

    use super::*;
    use crate::{
        API_VERSION, DumpContext, FdInfo, FileOwner, FileRestore, FileRestorer, FileStat,
        PluginInfo, RestoreContext, sort_plugins,
    };

    struct Fake {
        name: &'static str,
        priority: i32,
        prefix: &'static str,
        types: &'static [FdTypes],
    }

    impl Plugin for Fake {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: self.name,
                version: "0",
                priority: self.priority,
                api_version: API_VERSION,
            }
        }
        fn fd_handler(&self) -> Option<&dyn FdHandler> {
            (!self.types.is_empty()).then_some(self as &dyn FdHandler)
        }
    }

    impl FdHandler for Fake {
        fn fd_types(&self) -> &[FdTypes] {
            self.types
        }
        fn claims(&self, fd: &FdDesc) -> bool {
            fd.link.starts_with(self.prefix)
        }
        fn dump_file(
            &self,
            _: &mut dyn DumpContext,
            _: &FdDesc,
            id: u32,
        ) -> Result<FileEntry, PluginError> {
            Ok(FileEntry {
                id,
                ..Default::default()
            })
        }
        fn start_restore(
            &self,
            _: &mut dyn RestoreContext,
            _: &[FileEntry],
        ) -> Result<Box<dyn FileRestorer>, PluginError> {
            Ok(Box::new(FakeRestorer))
        }
    }

    struct FakeRestorer;

    impl FileRestorer for FakeRestorer {
        fn open_file(
            &mut self,
            _: &mut dyn RestoreContext,
            _: &FileEntry,
        ) -> Result<OwnedFd, PluginError> {
            Err(PluginError::bad_image("files.img", "fake"))
        }
    }

    static A: Fake = Fake {
        name: "a",
        priority: 200,
        prefix: "/",
        types: &[FdTypes::Reg],
    };
    static B: Fake = Fake {
        name: "b",
        priority: 100,
        prefix: "/dev/",
        types: &[FdTypes::Reg, FdTypes::Pipe],
    };
    static C: Fake = Fake {
        name: "c",
        priority: 100,
        prefix: "",
        types: &[],
    };

    fn desc(link: &str) -> FdDesc {
        FdDesc {
            pid: 42,
            fd: 7,
            link: link.into(),
            fdinfo: FdInfo::default(),
            stat: FileStat::default(),
            owner: FileOwner::default(),
            file: std::fs::File::open("/dev/null").unwrap().into(),
        }
    }

    fn sorted() -> Vec<&'static dyn Plugin> {
        let mut v: Vec<&'static dyn Plugin> = vec![&A, &C, &B];
        sort_plugins(&mut v);
        v
    }

    #[test]
    fn sorted_by_priority_then_name() {
        let names: Vec<_> = sorted().iter().map(|p| p.info().name).collect();
        assert_eq!(names, ["b", "c", "a"]);
        // C has no fd handler.
        assert_eq!(fd_handlers(&sorted()).len(), 2);
    }

    #[test]
    fn first_claiming_handler_wins() {
        let p = sorted();
        assert_eq!(
            find_fd_handler(&p, &desc("/dev/null"))
                .unwrap()
                .plugin
                .info()
                .name,
            "b"
        );
        assert_eq!(
            find_fd_handler(&p, &desc("/etc/passwd"))
                .unwrap()
                .plugin
                .info()
                .name,
            "a"
        );
        let err = find_fd_handler(&p, &desc("socket:[5]")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pid 42") && msg.contains("fd 7") && msg.contains("socket:[5]"));
        assert!(msg.contains("--plugin-dir"), "{msg}");
    }

    #[test]
    fn restore_handler_by_type() {
        let p = sorted();
        let entry = |t: FdTypes| FileEntry {
            r#type: t as i32,
            id: 9,
            ..Default::default()
        };
        assert_eq!(
            find_restore_handler(&p, &entry(FdTypes::Pipe))
                .unwrap()
                .plugin
                .info()
                .name,
            "b"
        );
        let msg = find_restore_handler(&p, &entry(FdTypes::Unixsk))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("UNIXSK") && msg.contains("file id 9"), "{msg}");
        let mut ctx = crate::testing::MemoryImages::new(1);
        let mut restore = FileRestore::start(&p, &mut ctx, &[]).unwrap();
        let err = restore.open(&mut ctx, &entry(FdTypes::Pipe)).unwrap_err();
        assert!(err.to_string().contains("fake"), "{err}");
        assert!(matches!(
            restore.open(&mut ctx, &entry(FdTypes::Timerfd)),
            Err(PluginError::NoRestorer { .. })
        ));
        let unknown = FileEntry {
            r#type: 777,
            id: 1,
            ..Default::default()
        };
        let msg = find_restore_handler(&p, &unknown).unwrap_err().to_string();
        assert!(msg.contains("777"), "{msg}");
    }
}
