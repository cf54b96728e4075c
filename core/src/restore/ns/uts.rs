//! `utsns-N.img`: the node and domain names, set inside the root's new UTS namespace.

use criu_proto::ImageKind;
use criu_proto::images::UtsnsEntry;
use nix::sched::CloneFlags;

use crate::restore::error::{RestoreError, Result, bad};
use crate::restore::imgread::Images;
use crate::sys::nsenter::{in_namespaces, set_uts_names};

/// The kernel's limit on both names (`__NEW_UTS_LEN`, without the terminating NUL).
pub const UTS_LEN: usize = 64;

/// The names to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtsState {
    pub nodename: String,
    pub domainname: String,
}

impl UtsState {
    /// Reads `utsns-<id>.img`; a name the kernel would refuse is an error naming the image.
    pub fn load(images: &Images, id: u32) -> Result<UtsState> {
        let kind = ImageKind::Utsns;
        let name = kind.file_name(u64::from(id));
        if !images.exists(&name) {
            return Err(bad(&name, None, "missing (the root's UTS namespace)"));
        }
        let e: UtsnsEntry = images.single(&name, kind.magic())?;
        for (field, v) in [("nodename", &e.nodename), ("domainname", &e.domainname)] {
            if v.len() > UTS_LEN {
                return Err(bad(
                    &name,
                    Some(0),
                    format!("{field} of {} bytes, over the kernel's {UTS_LEN}", v.len()),
                ));
            }
        }
        Ok(UtsState {
            nodename: e.nodename,
            domainname: e.domainname,
        })
    }

    /// Sets both names in the UTS namespace of `pid`.
    pub fn apply(&self, pid: i32) -> Result<()> {
        let step = "setting the UTS namespace's names";
        in_namespaces(pid, CloneFlags::CLONE_NEWUTS, || {
            set_uts_names(&self.nodename, &self.domainname)
        })
        .map_err(|e| super::enter_err(pid, step, e))?
        .map_err(|source| RestoreError::Local {
            pid,
            step: format!("{step} (sethostname/setdomainname)"),
            source,
        })
    }
}
