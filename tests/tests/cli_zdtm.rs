//! The `criu` command line end to end: CRIU's test driver's exact dump and restore command
//! lines (with a config file repeating options) on a self-checking workload, `check
//! --feature` exit codes, options that are not supported failing loudly, logs truncated.

use criu_tests::{ScratchDir, skip_unless_root};

mod cli_support;
use cli_support::{Counter, assert_exit, criu, criu_env, read_when_there, stderr};

/// zdtm.py (host flavour): `criu dump --no-default-config --log-file dump.log --images-dir
/// DIR --verbosity=4 --tree PID [per-test options] --pidfile FILE --timeout 10
/// --pre-dump-mode splice`, then `criu restore --no-default-config --log-file restore.log
/// --images-dir DIR --verbosity=4 [per-test options] --pidfile FILE --restore-detached`; the
/// restored pid is read back from the pidfile. A config file (CRIU_CONFIG_FILE) gives some
/// of the same options first, which the command line overrides.
#[test]
fn zdtm_dump_and_restore_command_lines() {
    if skip_unless_root("zdtm_dump_and_restore_command_lines") {
        return;
    }
    let scratch = ScratchDir::new("cli-zdtm");
    let images = scratch.path().join("dump");
    std::fs::create_dir_all(&images).expect("images dir");
    let config = scratch.path().join("criu.conf");
    std::fs::write(
        &config,
        "# given again on the command line\nno-default-config\nlog-file other.log\n\
         timeout 5\nverbosity 1\ntcp-established\n",
    )
    .expect("config");
    let mut counter = Counter::start(scratch.path());
    let pid = counter.pid.to_string();
    let dir = images.to_str().expect("utf-8");
    let env = [("CRIU_CONFIG_FILE", config.as_path())];

    let dump = criu_env(
        &[
            "dump",
            "--no-default-config",
            "--log-file",
            "dump.log",
            "--images-dir",
            dir,
            "--verbosity=4",
            "--tree",
            &pid,
            "--tcp-established",
            "--ext-unix-sk",
            "--link-remap",
            "--pidfile",
            "dump.pid",
            "--timeout",
            "10",
            "--pre-dump-mode",
            "splice",
        ],
        &env,
    );
    assert_exit(&dump, 0, "zdtm's dump");
    counter.wait_gone();
    let log = std::fs::read_to_string(images.join("dump.log")).expect("dump.log");
    assert!(
        log.contains("DEBUG"),
        "--verbosity=4 overrides the config's 1"
    );
    assert!(
        !images.join("other.log").exists(),
        "the command line's log file wins"
    );

    let pidfile = scratch.path().join("restore.pid");
    let restore = criu_env(
        &[
            "restore",
            "--no-default-config",
            "--log-file",
            "restore.log",
            "--images-dir",
            dir,
            "--verbosity=4",
            "--tcp-established",
            "--ext-unix-sk",
            "--link-remap",
            "--pidfile",
            pidfile.to_str().expect("utf-8"),
            "--restore-detached",
        ],
        &env,
    );
    assert_exit(&restore, 0, "zdtm's restore");
    assert_eq!(read_when_there(&pidfile), pid, "the pidfile names the root");
    counter.assert_runs_on(5);
    assert!(images.join("restore.log").exists());
}

/// `criu check --no-default-config --verbosity=0 --feature NAME`, as zdtm gates tests: exit
/// 0 when present, 1 when missing (also when criu-rs does not checkpoint it) or unknown.
#[test]
fn check_feature_exit_codes() {
    let check = |name: &str| {
        criu(&[
            "check",
            "--no-default-config",
            "--verbosity=0",
            "--feature",
            name,
        ])
    };
    if skip_unless_root("check_feature_exit_codes") {
        return;
    }
    assert_exit(&check("clone3_set_tid"), 0, "clone3_set_tid");
    assert_exit(&check("kcmp_epoll"), 0, "kcmp_epoll");
    // Checkpointed by the built-in inet plugin on this kernel.
    assert_exit(&check("ipv6_freebind"), 0, "ipv6_freebind");
    assert_exit(&check("tcp_half_closed"), 0, "tcp_half_closed");
    // Raw sockets: read with getsockopt, whether the kernel has a raw sock_diag or not.
    assert_exit(&check("net_diag_raw"), 0, "net_diag_raw");
    // Restored by the core where the kernel has them (AIO rings: CONFIG_AIO; loginuid:
    // CONFIG_AUDIT, both in Debian's kernels).
    assert_exit(&check("aio_remap"), 0, "aio_remap");
    let luid = std::path::Path::new("/proc/self/loginuid").exists();
    assert_exit(&check("loginuid"), if luid { 0 } else { 1 }, "loginuid");
    // The netlock plugin's nftables lock: present exactly when its tool is.
    let nft = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("nft").exists());
    let out = check("network_lock_nftables");
    assert_exit(&out, if nft { 0 } else { 1 }, "network_lock_nftables");
    for name in [
        "tun",
        // Unix sockets bound in another mount namespace: mount namespaces are not dumped.
        "sk_unix_file",
        "link_nsid",
    ] {
        let out = check(name);
        assert_exit(&out, 1, name);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("not supported by criu-rs"), "{name}: {text}");
    }
    let out = check("no_such_feature");
    assert_exit(&out, 1, "unknown feature");
    assert!(stderr(&out).contains("unknown feature"), "{}", stderr(&out));
}

/// An option for something not built yet fails the command it would change, naming it;
/// bad usage exits 1, as CRIU.
#[test]
fn unsupported_and_bad_options_fail_loudly() {
    let scratch = ScratchDir::new("cli-unsupported");
    let dir = scratch.path().to_str().expect("utf-8");
    let out = criu(&["restore", "-D", dir, "--inherit-fd", "fd[3]:pipe:[7]"]);
    assert_exit(&out, 1, "--inherit-fd");
    assert!(
        stderr(&out).contains("not supported yet: --inherit-fd fd[3]:pipe:[7]"),
        "{}",
        stderr(&out)
    );
    // Mounts (`mnt[..]`) are external resources of the mount namespace code; devices not.
    let out = criu(&["dump", "-t", "1", "-D", dir, "--external", "dev[1/3]:null"]);
    assert_exit(&out, 1, "--external");
    assert!(stderr(&out).contains("not supported yet: --external"));
    let out = criu(&["dump", "--bogus"]);
    assert_exit(&out, 1, "unknown option");
    assert!(stderr(&out).contains("unrecognized option '--bogus'"));
    let out = criu(&["--help"]);
    assert_exit(&out, 0, "--help");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--pre-dump-mode"));
}

/// `-o FILE` starts a new log on each run (CRIU truncates it).
#[test]
fn log_file_is_truncated() {
    if skip_unless_root("log_file_is_truncated") {
        return;
    }
    let scratch = ScratchDir::new("cli-log");
    let log = scratch.path().join("check.log");
    std::fs::write(&log, "OLD RUN\n".repeat(1000)).expect("old log");
    let dir = scratch.path().to_str().expect("utf-8");
    let out = criu(&["check", "-D", dir, "-o", "check.log", "-v4"]);
    assert_exit(&out, 0, "check");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("OLD RUN"), "the old log is still there");
    assert!(text.contains("kernel probe"), "{text}");
}
