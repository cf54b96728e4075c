//! The in-tree files and pipes plugins loaded as `.so` files (this test binary links no
//! built-in plugin): a real dump of a task holding a pipe with data, an unlinked file and a
//! FIFO with data, then the plugins' restore side from the images. Every context service
//! crosses the plugin boundary here: image entries with trailing data, memo, new file ids,
//! image reads, kept fds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;

use criu_core::dump::{DumpOptions, dump};
use criu_core::plugins::{self, Origin};
use criu_plugin_api::{FileRestore, ImageRef, builtin_plugins, read_messages};
use criu_proto::images::{FdTypes, FileEntry, RemapFilePathEntry};
use criu_tests::{ScratchDir, skip_unless_root};

mod plugin_abi_support;
mod plugin_support;

use plugin_support::{DirContext, FIFO_DATA, PIPE_DATA, SleepTask, read_task_pipe};

#[test]
fn files_and_pipes_as_loaded_plugins() {
    if skip_unless_root("files_and_pipes_as_loaded_plugins") {
        return;
    }
    assert!(
        builtin_plugins().is_empty(),
        "this test must link no plugin crate"
    );
    let dir = plugin_abi_support::build_tree_plugins("abi-so");
    let (new, refused) = plugins::load_dirs(&[dir.path().to_path_buf()], true);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(new.len(), 2);
    let names: Vec<_> = plugins::listing()
        .into_iter()
        .map(|l| (l.info.name, l.origin.to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("pipes", "libcriu_pipes.so".to_string()),
            ("files", "libcriu_files.so".to_string())
        ]
    );
    assert!(
        plugins::listing()
            .iter()
            .all(|l| l.origin != Origin::BuiltIn)
    );

    let _serial = plugin_support::serial();
    let Some(task) = SleepTask::start("abi-so-work") else {
        return;
    };
    let imgs = ScratchDir::new("abi-so-imgs");
    let pid = task.pid();
    let mut o = DumpOptions::new(pid, imgs.path());
    o.leave_running = true;
    dump(&o).unwrap_or_else(|e| panic!("dump: {}", plugin_abi_support::chain(&e)));
    assert_eq!(
        read_task_pipe(pid, 0),
        PIPE_DATA,
        "the dump consumed pipe data"
    );
    assert_eq!(read_task_pipe(pid, 2), FIFO_DATA);
    let ghost_content = task.ghost_content.clone();
    drop(task.guard);

    let mut ctx = DirContext::new(imgs.path());
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).unwrap();
    let of_type = |t: FdTypes| files.iter().filter(move |e| e.r#type == t as i32);
    assert!(of_type(FdTypes::Pipe).count() >= 1);
    assert_eq!(of_type(FdTypes::Fifo).count(), 1);
    let remaps: Vec<RemapFilePathEntry> = read_messages(&mut ctx, ImageRef::REMAP_FPATH).unwrap();
    assert_eq!(remaps.len(), 1, "one ghost file");

    // Restore side through the loaded plugins, from the images on disk.
    let all = plugins::all();
    let mut restore = FileRestore::start(&all, &mut ctx, &files).expect("start_restore");
    let mut opened = Vec::new();
    for e in &files {
        let (fd, plugin) = restore.open(&mut ctx, e).expect("open");
        opened.push((e.clone(), File::from(fd), plugin));
    }
    let find = |t: FdTypes| {
        opened
            .iter()
            .filter(|(e, _, _)| e.r#type == t as i32)
            .collect::<Vec<_>>()
    };
    // The pipe read end holding our data (the task may hold more pipes).
    let pipe_data: Vec<Vec<u8>> = find(FdTypes::Pipe)
        .iter()
        .filter_map(|(_, f, p)| {
            assert_eq!(*p, "pipes");
            let mut buf = vec![0u8; 64];
            nix::fcntl::fcntl(
                f.as_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .ok()?;
            let n = nix::unistd::read(f.as_fd(), &mut buf).ok()?;
            Some(buf[..n].to_vec())
        })
        .collect();
    assert!(pipe_data.iter().any(|d| d == PIPE_DATA), "{pipe_data:?}");
    let ghost = remaps[0].orig_id;
    let (_, mut f, p) = opened
        .into_iter()
        .find(|(e, _, _)| e.id == ghost)
        .expect("ghost file opened");
    assert_eq!(p, "files");
    assert_eq!(f.stream_position().unwrap(), 3);
    let mut all_bytes = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut all_bytes).unwrap();
    assert_eq!(all_bytes, ghost_content);
}
