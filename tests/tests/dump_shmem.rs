//! Dump of anonymous shared memory: pagemap-shmem-<shmid>.img names its own pages file,
//! entries are offsets inside the object, only written data is stored.

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::{MmEntry, StatsEntry};
use criu_tests::{ScratchDir, Workload, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

const ANON_SHARED: u32 = 1 << 8;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 9)) as u8
}

#[test]
fn dump_anonymous_shared_memory() {
    if skip_unless_root("dump_anonymous_shared_memory") {
        return;
    }
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_shmem")),
        &[],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    // The 1 MiB shared mapping, as /proc shows it.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let addr = maps
        .lines()
        .filter(|l| l.contains("/dev/zero (deleted)"))
        .find_map(|l| {
            let (s, e) = l.split_whitespace().next()?.split_once('-')?;
            let (s, e) = (
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            );
            (e - s == 1 << 20).then_some(s)
        })
        .expect("shared mapping in maps");

    let d = ScratchDir::new("dump-shmem");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_running = true;
    dump(&o).expect("dump with shared memory");

    let dir = ImageDir::open(d.path()).unwrap();
    let mm: MmEntry = dir.read_single(ImageKind::Mm, pid as u64).unwrap();
    let v = mm
        .vmas
        .iter()
        .find(|v| v.start == addr)
        .expect("shared vma");
    assert_eq!(v.status & ANON_SHARED, ANON_SHARED);
    assert_ne!(v.shmid, 0);
    let bytes = std::fs::read(d.path().join(format!("pagemap-shmem-{}.img", v.shmid))).unwrap();
    assert!(!bytes.is_empty());
    let raw = dir.read_raw(ImageKind::ShmemPagemap, v.shmid).unwrap();
    let head: criu_proto::images::PagemapHead =
        prost::Message::decode(&raw.entries[0].payload[..]).unwrap();
    let e: criu_proto::images::PagemapEntry =
        prost::Message::decode(&raw.entries[1].payload[..]).unwrap();
    assert_eq!(raw.entries.len(), 2);
    assert_eq!((e.vaddr, e.nr_pages), (0, Some(64)));
    let pages = std::fs::read(d.path().join(format!("pages-{}.img", head.pages_id))).unwrap();
    assert_eq!(pages.len(), 64 * 4096);
    assert!(pages.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    let st: StatsEntry = dir.read_single(ImageKind::Stats, 0).unwrap();
    let ds = st.dump.unwrap();
    assert_eq!(ds.shpages_written, Some(64));
    assert_eq!(ds.shpages_scanned, Some(256));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    w.wait_line("ok", Duration::from_secs(20));
}
