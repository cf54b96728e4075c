//! `utsns-N.img`: the node and domain names of the root's UTS namespace, read by a thread of
//! criu that joined it (`uname`).

use criu_proto::images::UtsnsEntry;
use nix::sched::CloneFlags;

use crate::image::{ImageDir, ImageKind};
use crate::sys::nsenter::in_namespaces;

use super::super::DumpError;
use super::super::run::img;

/// Writes `utsns-<id>.img` for the UTS namespace of `pid`.
pub fn dump(dir: &ImageDir, pid: i32, id: u32) -> Result<(), DumpError> {
    let names = in_namespaces(pid, CloneFlags::CLONE_NEWUTS, || {
        nix::sys::utsname::uname().map(|u| {
            (
                u.nodename().to_string_lossy().into_owned(),
                u.domainname().to_string_lossy().into_owned(),
            )
        })
    })
    .map_err(|e| super::enter_err(pid, e))?
    .map_err(|e| DumpError::sys(pid, "utsns", "uname", e))?;
    tracing::info!(pid, id, nodename = %names.0, domainname = %names.1, "UTS namespace");
    let entry = UtsnsEntry {
        nodename: names.0,
        domainname: names.1,
    };
    dir.write_single(ImageKind::Utsns, u64::from(id), &entry)
        .map_err(img(pid, "utsns"))
}
