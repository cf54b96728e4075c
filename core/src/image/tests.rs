use std::io::IoSlice;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use criu_proto::images::{
    CoreEntry, FsEntry, InventoryEntry, PagemapEntry, PipeDataEntry, PstreeEntry, core_entry::March,
};

use super::*;

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "criu-image-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn single_images_round_trip_with_mode_0600() {
    let t = TempDir::new("single");
    let dir = ImageDir::create(t.0.join("imgs")).unwrap();
    let core = CoreEntry {
        mtype: March::X8664 as i32,
        ..Default::default()
    };
    dir.write_single(ImageKind::Core, 42, &core).unwrap();
    let path = dir.file_path(ImageKind::Core, 42);
    assert!(path.ends_with("core-42.img"));
    assert_eq!(mode(&path), 0o600);
    let back: CoreEntry = dir.read_single(ImageKind::Core, 42).unwrap();
    assert_eq!(back, core);
    assert!(
        dir.read_single_opt::<FsEntry>(ImageKind::Fs, 42)
            .unwrap()
            .is_none()
    );
    // Two entries where one is expected.
    let fs = FsEntry {
        cwd_id: 1,
        root_id: 2,
        umask: Some(0o22),
    };
    dir.write_image(ImageKind::Fs, 1, &[fs, fs]).unwrap();
    assert!(matches!(
        dir.read_single::<FsEntry>(ImageKind::Fs, 1),
        Err(ImageError::EntryCount { count: 2, .. })
    ));
}

#[test]
fn existing_file_with_wide_mode_becomes_0600() {
    let t = TempDir::new("mode");
    let dir = ImageDir::open(&t.0).unwrap();
    let p = t.0.join("pstree.img");
    std::fs::write(&p, b"old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    dir.write_image::<PstreeEntry>(ImageKind::Pstree, 0, &[])
        .unwrap();
    assert_eq!(mode(&p), 0o600);
}

#[test]
fn streaming_writer_and_iterator() {
    let t = TempDir::new("stream");
    let dir = ImageDir::open(&t.0).unwrap();
    let mut w = dir.writer(ImageKind::Pstree, 0).unwrap();
    for pid in 1..=1000u32 {
        w.write_entry(&PstreeEntry {
            pid,
            ppid: pid - 1,
            pgid: 1,
            sid: 1,
            threads: vec![pid],
        })
        .unwrap();
    }
    assert_eq!(w.entries(), 1000);
    w.finish().unwrap();
    let all: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    assert_eq!(all.len(), 1000);
    let streamed: Vec<PstreeEntry> = dir
        .iter(ImageKind::Pstree, 0)
        .unwrap()
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(streamed, all);
}

#[test]
fn extra_payloads_and_raw_reads() {
    let t = TempDir::new("extra");
    let dir = ImageDir::open(&t.0).unwrap();
    let mut w = dir.writer(ImageKind::PipesData, 0).unwrap();
    let e = PipeDataEntry {
        pipe_id: 7,
        bytes: 5,
        size: Some(65536),
    };
    w.write_entry_with_extra(&e, b"hello").unwrap();
    w.finish().unwrap();
    let raw = dir.read_raw(ImageKind::PipesData, 0).unwrap();
    assert_eq!(raw.entries[0].extra, b"hello");
    assert!(matches!(
        dir.iter::<PipeDataEntry>(ImageKind::PipesData, 0),
        Err(ImageError::WrongKind { .. })
    ));
}

#[test]
fn truncated_image_names_file_and_offset() {
    let t = TempDir::new("trunc");
    let dir = ImageDir::open(&t.0).unwrap();
    let p = dir.file_path(ImageKind::Pstree, 0);
    let mut bytes = criu_proto::framing::header_bytes(ImageKind::Pstree).unwrap();
    bytes.extend_from_slice(&[10, 0, 0, 0, 8]);
    std::fs::write(&p, &bytes).unwrap();
    let err = dir
        .read_all::<PstreeEntry>(ImageKind::Pstree, 0)
        .unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(msg.contains("pstree.img"), "{msg}");
    assert!(msg.contains("offset 12"), "{msg}");
    let it_err = dir
        .iter::<PstreeEntry>(ImageKind::Pstree, 0)
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(it_err, ImageError::Corrupt { .. }));
}

#[test]
fn pages_and_pagemap() {
    let t = TempDir::new("pages");
    let dir = ImageDir::open(&t.0).unwrap();
    let mut pm = dir.pagemap_writer(100, 1).unwrap();
    let mut pw = dir.pages_writer(1).unwrap();
    let a = vec![0xaau8; 2 * PAGE_SIZE];
    let b = vec![0xbbu8; PAGE_SIZE];
    let c = vec![0xccu8; PAGE_SIZE];
    assert_eq!(pw.write_pages(&a).unwrap(), 0);
    pm.write_entry(&new_pagemap_entry(0x10000, 2, PE_PRESENT))
        .unwrap();
    pm.write_entry(&new_pagemap_entry(0x20000, 4, PE_PARENT))
        .unwrap();
    let at = pw
        .write_pages_vectored(&[IoSlice::new(&b), IoSlice::new(&c)])
        .unwrap();
    assert_eq!(at, 2 * PAGE_SIZE as u64);
    pm.write_entry(&new_pagemap_entry(0x30000, 2, PE_PRESENT | PE_LAZY))
        .unwrap();
    assert!(matches!(
        pw.write_pages(&[0u8; 10]),
        Err(ImageError::Unaligned { .. })
    ));
    pw.finish().unwrap();
    pm.finish().unwrap();

    let (head, entries) = dir.read_pagemap(100).unwrap();
    assert_eq!(head.pages_id, 1);
    assert_eq!(entries.len(), 3);
    let offs = page_offsets(&entries);
    assert_eq!(offs, vec![Some(0), None, Some(2 * PAGE_SIZE as u64)]);
    let r = dir.pages_reader(head.pages_id.into()).unwrap();
    assert_eq!(r.size(), 4 * PAGE_SIZE as u64);
    let mut buf = vec![0u8; PAGE_SIZE];
    r.read_at(offs[2].unwrap() + PAGE_SIZE as u64, &mut buf)
        .unwrap();
    assert_eq!(buf, c);
    let (head2, it) = dir.iter_pagemap(100).unwrap();
    assert_eq!(head2, head);
    let streamed: Vec<PagemapEntry> = it.collect::<Result<_>>().unwrap();
    assert_eq!(streamed, entries);
}

#[test]
fn inventory_last_and_discard() {
    let t = TempDir::new("discard");
    let dir = ImageDir::open(&t.0).unwrap();
    let other = t.0.join("not-ours.txt");
    std::fs::write(&other, b"x").unwrap();
    dir.write_single(
        ImageKind::Fs,
        5,
        &FsEntry {
            cwd_id: 1,
            root_id: 1,
            umask: None,
        },
    )
    .unwrap();
    dir.write_inventory(&InventoryEntry {
        img_version: criu_proto::kind::CRTOOLS_IMAGES_V1_1,
        ..Default::default()
    })
    .unwrap();
    let inv = dir.file_path(ImageKind::Inventory, 0);
    assert_eq!(mode(&inv), 0o600);
    let names: Vec<_> = std::fs::read_dir(&t.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert_eq!(dir.written().len(), 2);
    assert_eq!(dir.discard_written().unwrap(), 2);
    assert!(!inv.exists());
    assert!(other.exists());
}

#[test]
fn reads_criu_fixtures() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/criu-4.2-sample");
    if !fixtures.exists() {
        eprintln!("skipping: {} missing", fixtures.display());
        return;
    }
    let dir = ImageDir::open(&fixtures).unwrap();
    let tree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    let pid = u64::from(tree[0].pid);
    let _core: CoreEntry = dir.read_single(ImageKind::Core, pid).unwrap();
    let (head, entries) = dir.read_pagemap(pid).unwrap();
    let r = dir.pages_reader(head.pages_id.into()).unwrap();
    let total: u64 = entries
        .iter()
        .filter(|e| pagemap_flags(e) & PE_PRESENT != 0)
        .map(pagemap_nr_pages)
        .sum();
    assert_eq!(total * PAGE_SIZE as u64, r.size());
    let ps = inspect::ps(&dir).unwrap();
    assert_eq!(ps[0].comm, "sample");
    let fds = inspect::fds(&dir).unwrap();
    assert!(
        fds[0].fds.iter().any(|f| f.file.starts_with("pipe[")),
        "{fds:?}"
    );
    let mems = inspect::mems(&dir).unwrap();
    assert!(mems[0].vmas.iter().any(|v| v.desc == " [stack?]"));
    assert!(mems[0].vmas.iter().any(|v| v.desc == " [vsyscall] *"));
    let rss = inspect::rss(&dir).unwrap();
    assert_eq!(rss[0].runs.len(), entries.len());
}

#[test]
fn ps_survives_duplicate_pids() {
    let t = TempDir::new("dup");
    let dir = ImageDir::open(&t.0).unwrap();
    let e = |pid, ppid| PstreeEntry {
        pid,
        ppid,
        pgid: 1,
        sid: 1,
        threads: vec![pid],
    };
    dir.write_image(ImageKind::Pstree, 0, &[e(1, 0), e(1, 1)])
        .unwrap();
    let core = CoreEntry {
        tc: Some(Default::default()),
        ..Default::default()
    };
    dir.write_single(ImageKind::Core, 1, &core).unwrap();
    assert_eq!(inspect::ps(&dir).unwrap().len(), 2);
}
