use std::os::fd::AsRawFd;

use criu_plugin_api::NetworkLock;
use criu_proto::rpc::{CgroupRoot, CriuCgMode, CriuNetworkLockMethod, ExtMountMap, UnixSk};

use super::*;

fn me() -> i32 {
    std::process::id() as i32
}

/// A request on a real directory fd of ours (we are the "client": /proc/self/fd/N).
fn with_dir(
    f: impl FnOnce(CriuOpts) -> CriuOpts,
    op: Op,
) -> (Result<Plan, FieldError>, std::fs::File) {
    let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
    let o = f(CriuOpts {
        images_dir_fd: dir.as_raw_fd(),
        pid: Some(4242),
        ..CriuOpts::default()
    });
    (plan(&o, me(), op, true), dir)
}

#[test]
fn a_runc_dump_request_maps_onto_the_command_line_options() {
    let (p, _d) = with_dir(
        |o| CriuOpts {
            log_level: Some(4),
            log_file: Some("dump.log".into()),
            notify_scripts: Some(true),
            leave_running: Some(true),
            tcp_established: Some(true),
            shell_job: Some(false),
            lazy_pages: Some(false),
            auto_dedup: Some(false),
            empty_ns: Some(0),
            orphan_pts_master: Some(true),
            freeze_cgroup: Some("/sys/fs/cgroup/x".into()),
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(CriuCgMode::Ignore as i32),
            ghost_limit: Some(5 << 20),
            network_lock: Some(CriuNetworkLockMethod::Nftables as i32),
            root: Some("/run/x/rootfs".into()),
            ..o
        },
        Op::Dump,
    );
    let p = p.unwrap();
    assert_eq!(p.opts.cgroups.mode, criu_core::cgroup::Mode::Ignore);
    assert_eq!(p.opts.tree, Some(4242));
    assert!(p.opts.leave_running && p.opts.tcp_established);
    assert!(!p.opts.shell_job);
    assert_eq!(p.opts.verbosity, 4);
    assert_eq!(p.opts.ghost_limit, Some(5 << 20));
    assert_eq!(p.opts.network_lock, NetworkLock::Nftables);
    assert!(p.notify);
    assert_eq!(p.log, LogTarget::File("dump.log".into()));
    let d = p.opts.images_dir.unwrap().display().to_string();
    assert!(d.starts_with(&format!("/proc/{}/fd/", me())), "{d}");
    assert!(std::path::Path::new(&d).is_dir());
}

#[test]
fn the_network_lock_is_ebpf_unless_asked_and_ebpf_is_our_enum_value() {
    let (p, _d) = with_dir(|o| o, Op::Dump);
    assert_eq!(p.unwrap().opts.network_lock, NetworkLock::Ebpf);
    let (p, _d) = with_dir(
        |o| CriuOpts {
            network_lock: Some(CriuNetworkLockMethod::Ebpf as i32),
            ..o
        },
        Op::Dump,
    );
    assert_eq!(p.unwrap().opts.network_lock, NetworkLock::Ebpf);
    assert_eq!(CriuNetworkLockMethod::Ebpf as i32, 1001);
    let (p, _d) = with_dir(
        |o| CriuOpts {
            network_lock: Some(9),
            ..o
        },
        Op::Dump,
    );
    assert_eq!(p.unwrap_err().field, "network_lock");
}

#[test]
fn fields_asking_for_what_is_not_built_are_refused_by_name() {
    let refused = |f: fn(CriuOpts) -> CriuOpts, op: Op| with_dir(f, op).0.unwrap_err();
    // ext_mnt is --ext-mount-map, honoured as --external mnt[KEY]:VAL; skip_mnt is not.
    let (p, _d) = with_dir(
        |o| CriuOpts {
            ext_mnt: vec![ExtMountMap {
                key: "/a".into(),
                val: "/b".into(),
            }],
            ..o
        },
        Op::Dump,
    );
    assert_eq!(p.unwrap().opts.external, ["mnt[/a]:/b"]);
    let e = refused(
        |o| CriuOpts {
            skip_mnt: vec!["/a".into()],
            ..o
        },
        Op::Dump,
    );
    assert_eq!(e.field, "skip_mnt");
    assert!(e.to_string().contains("--skip-mnt /a"), "{e}");
    // --external: unix[INO] (also CRIU's older unix_sk_ino field) is honoured, other kinds
    // are refused on the command line, so here too, by the field.
    let (p, _d) = with_dir(
        |o| CriuOpts {
            unix_sk_ino: vec![UnixSk { inode: 77 }],
            ..o
        },
        Op::Dump,
    );
    assert_eq!(p.unwrap().opts.external, ["unix[77]"]);
    let e = refused(
        |o| CriuOpts {
            external: vec!["net[1]:extRootNetNS".into()],
            ..o
        },
        Op::Dump,
    );
    assert_eq!(e.field, "external");
    assert!(e.to_string().contains("net[1]"), "{e}");
    // manage_cgroups (soft) is honoured since cgroup.img is.
    let (p, _d) = with_dir(
        |o| CriuOpts {
            manage_cgroups: Some(true),
            ..o
        },
        Op::Restore,
    );
    assert_eq!(p.unwrap().opts.cgroups.mode, criu_core::cgroup::Mode::Soft);
    let e = refused(
        |o| CriuOpts {
            rst_sibling: Some(true),
            ..o
        },
        Op::Restore,
    );
    assert_eq!(e.field, "rst_sibling");
    // cg_root is --cgroup-root, honoured.
    let (p, _d) = with_dir(
        |o| CriuOpts {
            cg_root: vec![CgroupRoot {
                ctrl: None,
                path: "/x".into(),
            }],
            ..o
        },
        Op::Restore,
    );
    assert_eq!(p.unwrap().opts.cgroups.roots, [(None, "/x".to_string())]);
    assert_eq!(
        refused(|o| CriuOpts { pid: None, ..o }, Op::Dump).field,
        "pid"
    );
    assert_eq!(
        refused(
            |o| CriuOpts {
                log_file: Some("a/b.log".into()),
                ..o
            },
            Op::Dump
        )
        .field,
        "log_file"
    );
    assert_eq!(
        refused(
            |o| CriuOpts {
                pidfd_store_sk: Some(3),
                ..o
            },
            Op::Dump
        )
        .field,
        "pidfd_store_sk"
    );
    assert_eq!(
        refused(
            |o| CriuOpts {
                exec_cmd: vec!["true".into()],
                ..o
            },
            Op::Dump
        )
        .field,
        "exec_cmd"
    );
    assert_eq!(
        refused(
            |o| CriuOpts {
                images_dir_fd: -1,
                ..o
            },
            Op::Restore
        )
        .field,
        "images_dir_fd"
    );
    // The restore-only ones are the command line's: a dump accepts them.
    let (p, _d) = with_dir(
        |o| CriuOpts {
            rst_sibling: Some(true),
            root: Some("/x".into()),
            ..o
        },
        Op::Dump,
    );
    assert!(p.is_ok(), "{p:?}");
}

#[test]
fn the_rpc_config_file_overrides_the_request_and_a_missing_one_is_skipped() {
    let conf = std::env::temp_dir().join(format!("criu-rpc-conf-{}", me()));
    std::fs::write(
        &conf,
        "ghost-limit 3M\nno-tcp-established\nlog-file other.log\n",
    )
    .unwrap();
    let (p, _d) = with_dir(
        |o| CriuOpts {
            ghost_limit: Some(1),
            tcp_established: Some(true),
            config_file: Some(conf.display().to_string()),
            ..o
        },
        Op::Dump,
    );
    let _ = std::fs::remove_file(&conf);
    let p = p.unwrap();
    assert_eq!(p.opts.ghost_limit, Some(3 << 20));
    assert!(!p.opts.tcp_established);
    assert_eq!(p.opts.log_file, Some("other.log".into()));
    let (p, _d) = with_dir(
        |o| CriuOpts {
            config_file: Some("/nonexistent/runc.conf".into()),
            ..o
        },
        Op::Dump,
    );
    assert!(p.is_ok());
}

#[test]
fn a_refused_request_leaves_its_reason_in_the_log_file_it_names() {
    let dir = std::env::temp_dir().join(format!("criu-rpc-refusal-{}", me()));
    std::fs::create_dir_all(&dir).unwrap();
    let work = std::fs::File::open(&dir).unwrap();
    let o = CriuOpts {
        images_dir_fd: work.as_raw_fd(),
        work_dir_fd: Some(work.as_raw_fd()),
        log_file: Some("dump.log".into()),
        pid: Some(4242),
        skip_mnt: vec!["/a".into()],
        ..CriuOpts::default()
    };
    let e = plan(&o, me(), Op::Dump, true).unwrap_err();
    log_refusal(&o, me(), Op::Dump, &e.to_string());
    let log = dir.join("dump.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&log).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(text.contains("criu_opts.skip_mnt"), "{text}");
    assert_eq!(mode & 0o777, 0o600);
}
