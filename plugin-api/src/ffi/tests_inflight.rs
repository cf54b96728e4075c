//! API 0.6 across the boundary: a loaded plugin dumps a file in flight
//! ([`DumpContext::dump_file_in_flight`]) and opens one by id at restore
//! ([`RestoreContext::open_file_by_id`]), the host's contexts being in-memory ones.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use criu_proto::images::{FdTypes, FileEntry, PipeEntry};

use super::guest::{ExportedPlugin, module};
use super::host::from_module;
use crate::testing::{MemoryImages, own_fd_desc};
use crate::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    RestoreContext,
};

/// Dumps a pipe as an entry whose `pipe_id` is the id of a second pipe it hands over as a
/// file in flight; restores by opening that id.
struct Carrier;

impl Plugin for Carrier {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "carrier",
            version: "1.0.0",
            priority: 300,
            api_version: API_VERSION,
        }
    }
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

impl FdHandler for Carrier {
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
        let (r, _w) = nix::unistd::pipe().map_err(|e| PluginError::Task {
            pid: fd.pid,
            op: "pipe".into(),
            source: Box::new(e),
        })?;
        let carried = ctx.dump_file_in_flight(fd.pid, r.as_fd())?;
        Ok(FileEntry {
            r#type: FdTypes::Pipe as i32,
            id,
            pipe: Some(PipeEntry {
                id,
                pipe_id: carried,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
    fn start_restore(
        &self,
        _: &mut dyn RestoreContext,
        _: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(CarrierRestorer))
    }
}

struct CarrierRestorer;

impl FileRestorer for CarrierRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let carried = entry.pipe.as_ref().map_or(0, |p| p.pipe_id);
        ctx.open_file_by_id(carried)
    }
}

struct CarrierExport;
impl ExportedPlugin for CarrierExport {
    fn plugin() -> &'static dyn Plugin {
        static P: Carrier = Carrier;
        &P
    }
}

fn ino(fd: impl AsFd) -> u64 {
    nix::sys::stat::fstat(fd.as_fd()).expect("fstat").st_ino
}

#[test]
fn files_in_flight_cross_the_boundary() {
    let p = from_module(module::<CarrierExport>(), Path::new("libcarrier.so")).unwrap();
    let h = p.fd_handler().unwrap();
    let (r, _w) = nix::unistd::pipe().unwrap();
    let mut desc = own_fd_desc(r.as_fd()).unwrap();
    desc.pid = 77;
    let mut imgs = MemoryImages::new(10);
    let e = h.dump_file(&mut imgs, &desc, 3).unwrap();
    // The host got the file (a duplicate it owns) under a fresh id, with the owner's pid.
    assert_eq!(imgs.in_flight.len(), 1);
    let (owner, file, id) = &imgs.in_flight[0];
    assert_eq!((*owner, *id), (77, 11));
    assert_eq!(e.pipe.as_ref().unwrap().pipe_id, 11);
    assert!(
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .unwrap()
            .to_string_lossy()
            .starts_with("pipe:")
    );

    // Restore: the restorer asks the host for id 11 and gets a duplicate of its description.
    let (want, _w2) = nix::unistd::pipe().unwrap();
    let want_ino = ino(&want);
    imgs.files_by_id.insert(11, want);
    let mut restorer = h
        .start_restore(&mut imgs, std::slice::from_ref(&e))
        .unwrap();
    let got = restorer.open_file(&mut imgs, &e).unwrap();
    assert_eq!(ino(&got), want_ino);
    // An unknown id comes back as the host's typed error.
    imgs.files_by_id.clear();
    let err = restorer.open_file(&mut imgs, &e).unwrap_err();
    assert!(
        matches!(&err, PluginError::BadImage { image, reason } if image == "files.img" && reason.contains("11")),
        "{err:?}"
    );
}
