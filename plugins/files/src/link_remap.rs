//! CRIU's link remaps (`--link-remap`): a file open under a name that was removed while the
//! file keeps other names cannot be reopened by its path, and copying it as a ghost would
//! split it from its other names. The dump gives it a temporary hard link,
//! `<dir>/link_remap.<id>` (`linkat` of the open file), writes a REG entry for that name under
//! a new file id and a LINKED `remap-fpath` entry from the description's id to it. The
//! restore opens the link and removes it before the tree resumes. A dump that fails, or
//! leaves the tree running, removes its links again (as CRIU's `delete_link_remaps`).

use std::os::fd::AsFd;

use criu_plugin_api::{DumpContext, FdDesc, ImageRef, PluginError, RestoreContext, write_message};
use criu_proto::images::{FdTypes, FileEntry, RegFileEntry, RemapFilePathEntry, RemapType};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::unistd::{linkat, unlink};

use crate::dump::DumpState;

/// Links `fd`'s file as `link_remap.<id>` next to `path` (or in the nearest existing
/// ancestor), records it as a REG entry and a LINKED remap of `orig_id`.
pub(crate) fn dump(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    orig_id: u32,
    path: &str,
) -> Result<(), PluginError> {
    let link_id = ctx.new_file_id();
    let link = make_link(fd, path, link_id)?;
    // Noted at once: a later failure of this dump must remove it.
    ctx.state::<DumpState>()?.links.push(link.clone());
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        orig_id,
        link_id,
        link,
        "link remap"
    );
    let reg = RegFileEntry {
        id: link_id,
        flags: 0,
        pos: 0,
        fown: Default::default(),
        name: link,
        mode: Some(fd.stat.mode),
        ..Default::default()
    };
    let entry = FileEntry {
        r#type: FdTypes::Reg as i32,
        id: link_id,
        reg: Some(reg),
        ..Default::default()
    };
    write_message(ctx, ImageRef::FILES, &entry, &[])?;
    let remap = RemapFilePathEntry {
        orig_id,
        remap_id: link_id,
        remap_type: Some(RemapType::Linked as i32),
    };
    write_message(ctx, ImageRef::REMAP_FPATH, &remap, &[])
}

/// `linkat(fd, "", AT_EMPTY_PATH)` to `<dir>/link_remap.<id>`, walking up from the file's
/// old directory while the directory does not exist (as CRIU does).
fn make_link(fd: &FdDesc, path: &str, id: u32) -> Result<String, PluginError> {
    let mut dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    loop {
        let link = format!("{dir}/link_remap.{id}");
        match linkat(
            fd.file.as_fd(),
            "",
            AT_FDCWD,
            link.as_str(),
            AtFlags::AT_EMPTY_PATH,
        ) {
            Ok(()) => return Ok(link),
            Err(Errno::ENOENT) if !dir.is_empty() => {
                dir = dir.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            }
            Err(e) => {
                return Err(PluginError::Fd {
                    pid: fd.pid,
                    fd: fd.fd,
                    link: fd.link.clone(),
                    op: "linkat (link remap)",
                    source: std::io::Error::from(e),
                });
            }
        }
    }
}

/// Removes the links this dump made (a failed dump, or a tree that runs on). Errors are
/// logged: the hook that calls it cannot fail.
pub(crate) fn remove_dumped(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let links = std::mem::take(&mut ctx.state::<DumpState>()?.links);
    for link in links {
        if let Err(e) = unlink(link.as_str()) {
            tracing::warn!(link, error = %e, "cannot remove link remap");
        }
    }
    Ok(())
}

/// Notes a link opened by this restore, removed by [`remove_restored`].
pub(crate) fn note_restored(ctx: &mut dyn RestoreContext, link: &str) -> Result<(), PluginError> {
    let links = &mut ctx.state::<crate::proc_files::RestoreState>()?.links;
    if !links.iter().any(|l| l == link) {
        links.push(link.to_string());
    }
    Ok(())
}

/// [`criu_plugin_api::RestoreStage::BeforeResume`]: the restored tree holds the files, their
/// temporary names go (CRIU removes them at the same point).
pub(crate) fn remove_restored(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    let links = std::mem::take(&mut ctx.state::<crate::proc_files::RestoreState>()?.links);
    for link in links {
        match unlink(link.as_str()) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(PluginError::path(link, "unlink (link remap)", e)),
        }
    }
    Ok(())
}
