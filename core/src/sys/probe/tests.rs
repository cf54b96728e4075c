//! These run the probes against this kernel (6.18 with everything on, per the machine facts).

use std::fs::File;
use std::os::fd::AsFd;

use super::*;
use crate::sys::ptrace::{self, Options};

/// Skips (with a reason) when the kernel or our privileges lack a feature.
fn skip_if_missing<T>(what: &str, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if matches!(e.errno, Errno::ENOSYS | Errno::EPERM | Errno::EACCES) => {
            println!("skip {what}: {e}");
            None
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

#[test]
fn fd_creating_probes() {
    skip_if_missing("memfd_secret", memfd_secret());
    memfd_create(c"probe", 0).expect("memfd_create");
    if let Some((_, p)) = skip_if_missing("io_uring", io_uring_setup(4)) {
        assert!(p.sq_entries >= 4 && p.features != 0);
    }
    if let Some(fd) = skip_if_missing("userfaultfd", userfaultfd(0)) {
        let api = uffd_api(fd.as_fd(), 0).expect("UFFDIO_API");
        assert_eq!(api.api, kabi::UFFD_API);
        assert_ne!(api.features & kabi::UFFD_FEATURE_EVENT_FORK, 0);
    }
    skip_if_missing("bpf map", bpf_map_create_array());
    skip_if_missing("bpf prog", bpf_prog_load_trivial());
    openat2_path(c"/").expect("openat2");
    skip_if_missing("aio", aio_remap());
}

#[test]
fn pagemap_scan_sees_present_and_guard_pages() {
    let m = AnonMap::new(4).expect("map");
    let pm = File::open("/proc/self/pagemap").expect("pagemap");
    let mut out = [kabi::page_region::default(); 8];
    let Some((n, _)) = skip_if_missing(
        "PAGEMAP_SCAN",
        pagemap_scan(
            &pm,
            m.addr(),
            m.addr() + m.len() as u64,
            kabi::PAGE_IS_PRESENT,
            0,
            kabi::PAGE_IS_PRESENT,
            &mut out,
        ),
    ) else {
        return;
    };
    assert_eq!(n, 1);
    assert_eq!((out[0].start, out[0].end), (m.addr(), m.addr() + 4 * 4096));
    if skip_if_missing(
        "MADV_GUARD_INSTALL",
        m.madvise(4096, 4096, kabi::MADV_GUARD_INSTALL),
    )
    .is_some()
    {
        let (n, _) = pagemap_scan(
            &pm,
            m.addr(),
            m.addr() + m.len() as u64,
            kabi::PAGE_IS_GUARD,
            0,
            kabi::PAGE_IS_GUARD,
            &mut out,
        )
        .expect("scan guard");
        assert_eq!(n, 1);
        assert_eq!(out[0].start, m.addr() + 4096);
    }
}

#[test]
fn process_feature_probes() {
    assert_eq!(clone3_probe().expect("clone3"), Clone3Support::SetTid);
    assert_eq!(prctl_mm_map_size().expect("mm map size"), 104);
    assert!(rseq_exists().expect("rseq"));
    assert_ne!(prctl_get_tid_address().expect("tid address"), 0);
    skip_if_missing("timens", unshare_in_child(libc::CLONE_NEWTIME));
    sigqueueinfo_in_child().expect("rt_sigqueueinfo");
    let dir = std::env::temp_dir().join(format!("criu-probe-test-mnt-{}", std::process::id()));
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let c = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL")
    };
    let r = move_mount_set_group_in_child(&c(&a), &c(&b));
    let _ = std::fs::remove_dir(&a);
    let _ = std::fs::remove_dir(&b);
    let _ = std::fs::remove_dir(&dir);
    skip_if_missing("move_mount set group", r);
}

#[test]
fn frozen_child_probes() {
    let conf = with_frozen_child(ChildSetup::Idle, Options::empty(), |pid| {
        ptrace::get_rseq_config(pid)
    })
    .expect("child");
    let conf = conf.expect("rseq conf");
    assert!(!conf.is_unregistered(), "glibc registers rseq");

    let filt = with_frozen_child(
        ChildSetup::SeccompAllowAll,
        ptrace::suspend_seccomp_option(),
        |pid| ptrace::seccomp_get_filter(pid, 0),
    )
    .expect("seccomp child");
    assert_eq!(filt.expect("filter").len(), 8);
}

#[test]
fn vdso_can_be_mapped_in_a_child() {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let mut lo = u64::MAX;
    let mut hi = 0;
    for l in maps.lines() {
        if l.ends_with("[vvar]") || l.ends_with("[vvar_vclock]") || l.ends_with("[vdso]") {
            let r = l.split(' ').next().expect("range");
            let (a, b) = r.split_once('-').expect("dash");
            lo = lo.min(u64::from_str_radix(a, 16).expect("hex"));
            hi = hi.max(u64::from_str_radix(b, 16).expect("hex"));
        }
    }
    if hi == 0 {
        println!("skip: no vDSO in this process");
        return;
    }
    map_vdso_in_child(lo, hi).expect("ARCH_MAP_VDSO_64");
}
