//! Parsing tests: CRIU's option forms, repetition, and the command lines CRIU's callers send.

use super::*;

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn ok(s: &str) -> Cli {
    parse(&argv(s)).unwrap_or_else(|e| panic!("{s}: {e:#}"))
}

fn err(s: &str) -> String {
    format!("{:#}", parse(&argv(s)).expect_err(s))
}

#[test]
fn verbosity_forms() {
    assert_eq!(ok("criu dump").opts.verbosity, 2);
    assert_eq!(ok("criu -v dump").opts.verbosity, 3);
    assert_eq!(ok("criu -vvv dump").opts.verbosity, 5);
    assert_eq!(ok("criu dump -v0").opts.verbosity, 0);
    assert_eq!(ok("criu dump -v4").opts.verbosity, 4);
    assert_eq!(ok("criu --verbosity=1 x").opts.verbosity, 1);
    assert_eq!(ok("criu --verbosity x").opts.verbosity, 3);
    let cli = ok("criu dump -v4 -t 5");
    assert_eq!(
        (cli.command.as_deref(), cli.opts.tree),
        (Some("dump"), Some(5))
    );
    assert!(err("criu -v9999").contains("verbosity"));
    // As zdtm calls `criu check`: CRIU's atoi makes it level 0.
    assert_eq!(ok("criu check -verbosity=0 --feature x").opts.verbosity, 0);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("10").unwrap(), 10);
    assert_eq!(parse_size("1K").unwrap(), 1024);
    assert_eq!(parse_size("2M").unwrap(), 2 << 20);
    assert_eq!(parse_size("3G").unwrap(), 3 << 30);
    assert!(parse_size("x").is_err());
    assert!(parse_size("99999999999G").is_err());
}

#[test]
fn last_value_wins_and_lists_append() {
    let cli = ok(
        "criu dump -t 1 --tree=2 -D a --images-dir b -o x.log --log-file=y.log \
                  --no-default-config --no-default-config --timeout 3 --timeout 4 \
                  -L /a --libdir /b --plugin-dir /c --feature x --feature y",
    );
    let o = &cli.opts;
    assert_eq!(o.tree, Some(2));
    assert_eq!(o.images_dir, Some(PathBuf::from("b")));
    assert_eq!(o.log_file, Some(PathBuf::from("y.log")));
    assert!(o.no_default_config);
    assert_eq!(o.timeout, Some(4));
    assert_eq!(o.plugin_dir, ["/a", "/b", "/c"].map(PathBuf::from));
    assert_eq!(o.feature, ["x", "y"]);
}

#[test]
fn flags_repeat_negate_and_the_final_state_is_the_last() {
    let o = ok("criu restore -d -d --shell-job -j --no-shell-job --display-stats").opts;
    assert!(o.restore_detached && !o.shell_job && o.display_stats);
    let o = ok("criu restore --restore-detached --no-restore-detached").opts;
    assert!(!o.restore_detached);
    assert!(ok("criu restore --daemon").opts.restore_detached);
    let o = ok("criu dump -s -R").opts;
    assert!(o.leave_running && !o.leave_stopped);
    let o = ok("criu dump -R --leave-stopped").opts;
    assert!(!o.leave_running && o.leave_stopped);
}

#[test]
fn values_are_checked_as_criu_checks_them() {
    assert!(err("criu dump -t 0").contains("--tree"));
    assert!(err("criu dump -t x").contains("--tree"));
    assert!(err("criu dump --pre-dump-mode copy").contains("--pre-dump-mode"));
    assert!(err("criu dump --network-lock bpf").contains("--network-lock"));
    assert_eq!(
        ok("criu dump --network-lock ebpf").opts.network_lock,
        criu_plugin_api::NetworkLock::Ebpf
    );
    assert_eq!(
        ok("criu dump --network-lock none").opts.network_lock,
        criu_plugin_api::NetworkLock::Skip
    );
    assert!(err("criu restore --veth-pair a").contains("--veth-pair"));
    assert!(err("criu restore --empty-ns pid").contains("--empty-ns"));
    assert!(err("criu dump --ms").contains("deprecated"));
    assert!(err("criu dump --ghost-limit 1Q").contains("--ghost-limit"));
    assert!(err("criu dump --cpu-cap=gpu").contains("--cpu-cap"));
    assert!(err("criu dump --bogus").contains("unrecognized option '--bogus'"));
    ok(
        "criu dump --pre-dump-mode read --network-lock skip --file-validation buildid \
        --cpu-cap=fpu,ins --manage-cgroups=full",
    );
}

#[test]
fn unsupported_options_fail_only_the_commands_they_change() {
    let refuse = |line: &str| {
        let cli = ok(line);
        refuse_unsupported(cli.command.as_deref().unwrap_or(""), &cli.opts)
    };
    let e = refuse("criu restore --inherit-fd fd[3]:pipe:[123]").unwrap_err();
    assert!(format!("{e}").starts_with("not supported yet: --inherit-fd fd[3]:pipe:[123]"));
    assert!(refuse("criu dump -t 1 --inherit-fd fd[3]:pipe:[123]").is_ok());
    assert!(refuse("criu dump -t 1 --external dev[1/3]:y").is_err());
    assert!(refuse("criu dump -t 1 --page-server --address 1.2.3.4 --port 9").is_err());
    assert!(refuse("criu dump -t 1 --page-server --no-page-server").is_ok());
    // -l is --file-locks, honoured.
    assert!(refuse("criu restore -l").is_ok());
    // Cgroups are honoured.
    assert!(refuse("criu restore --manage-cgroups").is_ok());
    assert!(refuse("criu restore --manage-cgroups=soft --manage-cgroups=ignore").is_ok());
    assert!(refuse("criu restore -S -d").is_err());
    assert!(refuse("criu check --external x --lazy-pages").is_ok());
    // Permissions for resources the dump refuses anyway are accepted.
    assert!(refuse("criu dump -t 1 --tcp-established --ext-unix-sk --link-remap -x").is_ok());
}

/// `-xINO,INO` names sockets as `--external unix[INO]` does; `--external unix[INO]` is
/// honoured, other `--external` kinds are not yet.
#[test]
fn ext_unix_sk_inodes_and_external_unix() {
    let cli = ok("criu dump -t 1 -x12,34 --external unix[56]");
    assert!(cli.opts.ext_unix_sk);
    assert_eq!(cli.opts.external, ["unix[12]", "unix[34]", "unix[56]"]);
    refuse_unsupported("dump", &cli.opts).unwrap();
    refuse_unsupported("restore", &ok("criu restore --external unix[56]").opts).unwrap();
    assert!(ok("criu dump -t 1 --ext-unix-sk").opts.external.is_empty());
    assert!(err("criu dump -t 1 --ext-unix-sk=12,x").contains("inode"));
    assert!(err("criu dump -t 1 -x0").contains("inode"));
    let mixed = ok("criu dump -t 1 --external unix[5] --external tty[1:2]");
    let e = refuse_unsupported("dump", &mixed.opts).unwrap_err();
    assert!(format!("{e}").contains("tty[1:2]"), "{e}");
}

/// `--veth-pair IN=OUT` is CRIU's spelling of `--external veth[IN]:OUT`; both are honoured.
#[test]
fn veth_pair_is_an_external_veth() {
    let cli = ok("criu restore --veth-pair eth0=out0 --external veth[eth1]:out1");
    assert_eq!(cli.opts.external, ["veth[eth0]:out0", "veth[eth1]:out1"]);
    refuse_unsupported("restore", &cli.opts).unwrap();
    assert!(err("criu restore --veth-pair eth0").contains("IN=OUT"));
}

/// `criu dump` and `criu restore` as CRIU's test driver (zdtm.py, host flavour) sends them,
/// with the per-test options it adds.
#[test]
fn zdtm_command_lines() {
    let dump = "criu dump --no-default-config --log-file dump.log --images-dir /tmp/d \
                --verbosity=4 --tree 42 --tcp-established --file-locks --link-remap \
                --ext-unix-sk --pidfile p --timeout 10 --pre-dump-mode splice";
    let cli = ok(dump);
    assert_eq!(cli.command.as_deref(), Some("dump"));
    assert_eq!(cli.opts.tree, Some(42));
    assert_eq!(cli.opts.verbosity, 4);
    assert_eq!(cli.opts.timeout, Some(10));
    assert!(cli.opts.no_default_config);
    assert_eq!(cli.opts.log_file, Some(PathBuf::from("dump.log")));
    assert!(cli.opts.file_locks);
    refuse_unsupported("dump", &cli.opts).unwrap();

    let restore = "criu restore --no-default-config --log-file restore.log --images-dir /tmp/d \
                   --verbosity=4 --tcp-established --ext-unix-sk --link-remap \
                   --pidfile /tmp/p --restore-detached";
    let cli = ok(restore);
    assert!(cli.opts.restore_detached);
    assert_eq!(cli.opts.pidfile, Some(PathBuf::from("/tmp/p")));
    refuse_unsupported("restore", &cli.opts).unwrap();

    let check = ok("criu check --no-default-config --verbosity=0 --feature mnt_id");
    assert_eq!(check.opts.verbosity, 0);
    assert_eq!(check.opts.feature, ["mnt_id"]);
}

/// The options runc (runc-checkpoint(8), runc-restore(8)) and podman map onto CRIU's, as
/// CRIU command lines: every one parses; what they ask for that is not built is refused.
#[test]
fn runc_and_podman_option_sets() {
    let dump = "criu dump -t 7 -D img -W work -o dump.log -v4 --tcp-established --ext-unix-sk \
                --shell-job --leave-running --auto-dedup --track-mem --prev-images-dir ../parent \
                --ghost-limit 10M --display-stats --network-lock nftables --file-validation \
                filesize --manage-cgroups=ignore --tcp-close --skip-in-flight --link-remap";
    let cli = ok(dump);
    assert!(cli.opts.leave_running && cli.opts.shell_job);
    assert_eq!(cli.opts.ghost_limit, Some(10 << 20));
    refuse_unsupported("dump", &cli.opts).unwrap();
    for extra in [
        "--external dev[1/3]:m0",
        "--lazy-pages",
        "--page-server --address 127.0.0.1 --port 27",
        "--freeze-cgroup /sys/fs/cgroup/x --lazy-pages",
    ] {
        let cli = ok(&format!("{dump} {extra}"));
        let e = refuse_unsupported("dump", &cli.opts).unwrap_err();
        assert!(
            e.to_string().starts_with("not supported yet: --"),
            "{extra}: {e}"
        );
    }
    let restore = "criu restore -D img -d --pidfile pid -o restore.log --shell-job \
                   --tcp-established --ext-unix-sk --root /run/c/rootfs --cgroup-root /x \
                   --inherit-fd fd[1]:pipe:[5] --external net[4026531992]:extNetNs \
                   --lsm-profile apparmor:p --empty-ns net --status-fd 3 --manage-cgroups=soft";
    let cli = ok(restore);
    assert!(refuse_unsupported("restore", &cli.opts).is_err());
    // --root, --cgroup-root and --manage-cgroups are honoured.
    assert_eq!(cli.opts.unsupported.len(), 4);
}

#[test]
fn exec_cmd_takes_the_words_after_the_command() {
    let cli = ok("criu restore -D d --exec-cmd -- sh -c true");
    assert!(cli.opts.exec_cmd);
    assert_eq!(cli.command.as_deref(), Some("restore"));
    assert_eq!(cli.command_args, ["sh", "-c", "true"]);
}

#[test]
fn help_and_version() {
    assert!(ok("criu -h").help);
    assert!(ok("criu --help").help);
    assert!(ok("criu -V").version);
}

/// A config file's options come first: the command line repeats and overrides them.
#[test]
fn config_file_then_command_line() {
    let mut all = argv("criu");
    all.extend(
        crate::config::parse(
            "no-default-config\nverbosity 4\nlog-file a.log\nexternal dev[a]:b\nshell-job\n",
        )
        .unwrap(),
    );
    all.extend(argv(
        "dump --no-default-config -o b.log --external dev[c]:d -t 3 --no-shell-job -v1",
    ));
    let cli = parse(&all).unwrap();
    let o = &cli.opts;
    assert!(o.no_default_config && !o.shell_job);
    assert_eq!(o.verbosity, 1);
    assert_eq!(o.log_file, Some(PathBuf::from("b.log")));
    let ext: Vec<_> = o
        .unsupported
        .iter()
        .filter_map(|g| g.value.clone())
        .collect();
    assert_eq!(ext, ["dev[a]:b", "dev[c]:d"]);
    assert_eq!(cli.command.as_deref(), Some("dump"));
}
