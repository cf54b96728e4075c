//! A plugin built against the previous plugin API (0.4: the example plugin and its
//! `criu-plugin-api` exactly as they were at that commit) loads into this criu (0.5) with the
//! capabilities it had, dumps and restores its eventfd: the entry points, context methods
//! and restorer methods added since (plugin state, logger, `finish`) are absent on its side
//! and the host copes (no state, no forwarding, the restorer's default `finish`).

use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::plugins;
use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{API_VERSION, ApiVersion};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};

// No built-in eventfd plugin: the old `.so` is the only one handling eventfds.
use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_abi_support;
mod restore_common;

use plugin_abi_support::{API_0_4_COMMIT, EXAMPLE_NAME, build_at_commit, chain};
use restore_common::{lines, spawn_bg, wait_lines};

#[test]
fn a_plugin_built_against_api_0_4_loads_dumps_and_restores() {
    if skip_unless_root("a_plugin_built_against_api_0_4_loads_dumps_and_restores") {
        return;
    }
    let Some((plugin_dir, holder)) = build_at_commit("abi-0.4", API_0_4_COMMIT) else {
        return;
    };
    let (new, refused) = plugins::load_dirs(&[plugin_dir.path().to_path_buf()], true);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(new.len(), 1);
    let old = plugins::all()
        .into_iter()
        .find(|p| p.info().name == EXAMPLE_NAME)
        .expect("the old plugin is loaded");
    let declared = old.info().api_version;
    assert_eq!(declared, ApiVersion { major: 0, minor: 4 });
    assert!(declared < API_VERSION, "this test needs a newer host");
    // Nothing of 0.5 on its side: no state object.
    assert!(
        old.new_state(criu_plugin_api::RunKind::Dump)
            .unwrap()
            .is_none()
    );

    let work = ScratchDir::new("abi-0.4-work");
    let report = work.path().join("report");
    let pid = spawn_bg(holder.to_str().unwrap(), &[report.to_str().unwrap()]);
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 2, Duration::from_secs(10));
    assert!(first[1].ends_with("count=42 nonblock=1"), "{first:?}");
    let imgs = ScratchDir::new("abi-0.4-imgs");
    dump(&DumpOptions::new(pid, imgs.path())).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    drop(guard);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still there"
    );

    let before = lines(&report).len();
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    let _restored = PidGuard::new(pid);
    restore(&opts).unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    let after = wait_lines(&report, before + 3, Duration::from_secs(10));
    let fd = first[0].split("fd=").nth(1).unwrap();
    let last = after.last().unwrap();
    assert!(
        last.contains(&format!("fd={fd} count=42 nonblock=1")),
        "restored task reports {last:?}"
    );
}
