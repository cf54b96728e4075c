//! Opening files through the resource plugins (`criu-plugin-api`): the core's
//! [`RestoreContext`] for them, and a [`FileOpener`] that asks the first plugin restoring
//! each `files.img` entry.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use criu_plugin_api::{FileRestore, ImageRef, Plugin, PluginError, RestoreContext};
use criu_proto::images::FileEntry;

use super::files::FileOpener;

/// What the plugins see of this restore.
#[derive(Debug)]
pub struct Ctx {
    dir: PathBuf,
    pid: i32,
    /// Pids of the restored tree (identity: clone3 set_tid gives every task its old pid).
    pids: Vec<i32>,
    kept: BTreeMap<String, OwnedFd>,
    options: criu_plugin_api::RestoreOptions,
}

impl RestoreContext for Ctx {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        let kind = image.kind.to_proto();
        let name = kind.file_name(image.id.unwrap_or(0));
        let path = self.dir.join(&name);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PluginError::bad_image(name, format!("read: {e}")));
            }
        };
        let off = criu_proto::framing::check_header(kind, &data)
            .map_err(|e| PluginError::bad_image(name.clone(), e.to_string()))?;
        Ok(Some(data[off..].to_vec()))
    }

    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        if name.contains('/') {
            return Err(PluginError::bad_image(
                name,
                "plugin file names have no '/'",
            ));
        }
        match std::fs::read(self.dir.join(name)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::bad_image(name, format!("read: {e}"))),
        }
    }

    fn current_pid(&self) -> i32 {
        self.pid
    }

    fn restored_pid(&self, old: i32) -> Option<i32> {
        self.pids.contains(&old).then_some(old)
    }

    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        // Kept fds stay in the restorer: a restored task only gets the fds installed for it.
        self.kept.insert(key.to_string(), fd);
        Ok(())
    }

    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>> {
        self.kept.get(key).map(|f| f.as_fd())
    }

    fn options(&self) -> &criu_plugin_api::RestoreOptions {
        &self.options
    }
}

/// Opens files with the plugins' restorers.
pub struct PluginOpener<'p> {
    ctx: Ctx,
    files: FileRestore<'p>,
}

impl std::fmt::Debug for PluginOpener<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginOpener")
            .field("ctx", &self.ctx)
            .field("files", &self.files)
            .finish()
    }
}

impl<'p> PluginOpener<'p> {
    /// Starts every plugin's restore with all of `files.img`.
    pub fn start(
        plugins: &[&'p dyn Plugin],
        dir: PathBuf,
        pids: Vec<i32>,
        entries: &[FileEntry],
        shell_job: bool,
    ) -> Result<Self, String> {
        let mut options = criu_plugin_api::RestoreOptions::default();
        options.shell_job = shell_job;
        let mut ctx = Ctx {
            dir,
            pid: pids.first().copied().unwrap_or(0),
            pids,
            kept: BTreeMap::new(),
            options,
        };
        let files = FileRestore::start(plugins, &mut ctx, entries)
            .map_err(|(name, e)| format!("plugin {name}: {e}"))?;
        Ok(PluginOpener { ctx, files })
    }
}

impl FileOpener for PluginOpener<'_> {
    fn begin_task(&mut self, pid: i32) {
        self.ctx.pid = pid;
    }

    fn open(&mut self, entry: &FileEntry) -> Result<OwnedFd, String> {
        self.files
            .open(&mut self.ctx, entry)
            .map(|(fd, plugin)| {
                tracing::debug!(id = entry.id, plugin, "file opened");
                fd
            })
            .map_err(|e| e.to_string())
    }
}
