//! Anonymous hugetlb memory (`wl_hugetlb_anon`, zdtm's maps09): a shared and a private 4 MiB
//! area of 2 MiB huge pages. After dump, kill and restore the workload finds its contents,
//! both areas still hugetlb memory of 2 MiB pages on the same device, the shared one shared
//! with a child it forks and the private one private. The images are CRIU's form: both VMAs
//! `MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB`, the shared one an anonymous shared object
//! whose contents are in `pagemap-shmem-<shmid>.img`.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::images::MmEntry;
use criu_tests::{PidGuard, ScratchDir, Workload, skip_unless_root, wait_pid_gone};

use criu_plugin_files as _;
use criu_plugin_memfd as _;
use criu_plugin_pipes as _;

const ANON_SHARED: u32 = 1 << 8;
const ANON_PRIVATE: u32 = 1 << 9;

fn free_huge_pages() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn verdict(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && t.ends_with('\n')
        {
            return t.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no verdict in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn usr1(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("SIGUSR1");
}

#[test]
fn anonymous_hugetlb_memory_survives_dump_and_restore() {
    let test = "anonymous_hugetlb_memory_survives_dump_and_restore";
    if skip_unless_root(test) {
        return;
    }
    // 2 + 2 pages for the areas, one for the copy a child's write to the private area makes.
    if free_huge_pages() < 5 {
        eprintln!(
            "skipping {test}: fewer than 5 free 2 MiB huge pages \
             (raise /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)"
        );
        return;
    }
    let work = ScratchDir::new("hugetlb-anon");
    let v = work.path().join("verdict");
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_hugetlb_anon")),
        &[v.to_str().expect("utf-8")],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    usr1(pid);
    w.wait_line("ok", Duration::from_secs(20));
    std::fs::remove_file(&v).expect("verdict");

    let d = ScratchDir::new("hugetlb-anon-images");
    dump(&DumpOptions::new(pid, d.path())).expect("dump");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);

    let img = ImageDir::open(d.path()).expect("images");
    let mm: MmEntry = img.read_single(ImageKind::Mm, pid as u64).expect("mm");
    let huge = (libc::MAP_ANONYMOUS | libc::MAP_HUGETLB) as u32 | (21 << libc::MAP_HUGE_SHIFT);
    let hugetlb: Vec<_> = mm.vmas.iter().filter(|v| v.flags & huge == huge).collect();
    assert_eq!(hugetlb.len(), 2, "{:?}", mm.vmas);
    let shared = hugetlb
        .iter()
        .find(|v| v.status & ANON_SHARED != 0)
        .expect("the shared area");
    assert!(hugetlb.iter().any(|v| v.status & ANON_PRIVATE != 0));
    assert!(
        d.path()
            .join(format!("pagemap-shmem-{}.img", shared.shmid))
            .exists()
    );

    let opts = RestoreOptions {
        images_dir: d.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    usr1(pid);
    assert_eq!(verdict(&v), "ok");
}
