//! The out-of-tree eventfd plugin, built as a third party would and loaded from a
//! `--plugin-dir`: without it a dump of a task holding an eventfd fails naming the resource,
//! the pid and the hint; with it the task is dumped, killed and restored, and reports the
//! same counter and flags. A plugin built for another plugin API major version is refused
//! naming the file and both versions.

use std::path::PathBuf;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::plugins::{self, Origin, PluginLoadError};
use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::ffi::LoadError;
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

// The built-in eventfd plugin is deliberately not linked into this test: eventfds have no
// handler until the example `.so` is loaded (plugin_abi_takeover checks the two together).
use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_abi_support;
mod plugin_support;
mod restore_common;

use plugin_abi_support::{EXAMPLE_NAME, EXAMPLE_SO, build_example, chain};
use restore_common::{dump_and_kill, spawn_bg, wait_lines};

fn files_img(dir: &std::path::Path) -> Vec<FileEntry> {
    let mut ctx = plugin_support::DirContext::new(dir);
    criu_plugin_api::read_messages(&mut ctx, criu_plugin_api::ImageRef::FILES)
        .expect("files.img decodes")
}

#[test]
fn eventfd_needs_the_plugin_and_round_trips_with_it() {
    if skip_unless_root("eventfd_needs_the_plugin_and_round_trips_with_it") {
        return;
    }
    let Some((plugin_dir, holder)) = build_example("abi-eventfd", &[]) else {
        return;
    };
    let work = ScratchDir::new("abi-eventfd-work");
    let report = work.path().join("report");
    let pid = spawn_bg(holder.to_str().unwrap(), &[report.to_str().unwrap()]);
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 2, Duration::from_secs(10));
    assert!(first[0].starts_with(&format!("ready {pid} ")), "{first:?}");
    assert!(first[1].ends_with("count=42 nonblock=1"), "{first:?}");

    // 1. Without the plugin: a clear failure, the task keeps running.
    let imgs = ScratchDir::new("abi-eventfd-noplugin");
    let mut o = DumpOptions::new(pid, imgs.path());
    o.leave_running = true;
    let err = dump(&o).expect_err("dump without the eventfd plugin");
    let msg = chain(&err);
    assert!(
        msg.starts_with(&format!("pid {pid}: no plugin handles fd "))
            && msg.contains("anon_inode:[eventfd]")
            && msg.contains("(--plugin-dir/-L, else $CRIU_LIBS_DIR, else /usr/lib/criu)")
            && msg.ends_with("load one with --plugin-dir/-L"),
        "{msg}"
    );
    assert!(
        criu_tests::pid_exists(pid),
        "the failed dump killed the task"
    );

    // 2. Load it from the private directory.
    let (new, refused) = plugins::load_dirs(&[plugin_dir.path().to_path_buf()], true);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(new.len(), 1);
    let listed = plugins::listing();
    let eventfd = listed
        .iter()
        .find(|l| l.info.name == EXAMPLE_NAME)
        .expect("eventfd listed");
    assert_eq!(
        eventfd.origin,
        Origin::File(plugin_dir.path().join(EXAMPLE_SO))
    );
    assert_eq!(eventfd.origin.to_string(), EXAMPLE_SO);
    assert!(
        eventfd.to_string().contains("fd types EVENTFD"),
        "{eventfd}"
    );
    assert!(
        listed
            .iter()
            .any(|l| l.info.name == "files" && l.origin == Origin::BuiltIn)
    );

    // 3. Dump (the images hold a CRIU EVENTFD entry), kill, restore.
    let imgs = ScratchDir::new("abi-eventfd-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);
    let efd = files_img(imgs.path())
        .into_iter()
        .find(|e| e.r#type == FdTypes::Eventfd as i32)
        .and_then(|e| e.efd)
        .expect("an EVENTFD entry in files.img");
    assert_eq!(efd.counter, 42);
    assert_eq!(efd.flags & libc::O_NONBLOCK as u32, libc::O_NONBLOCK as u32);
    let before = restore_common::lines(&report).len();
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    let _restored = PidGuard::new(pid);
    let after = wait_lines(&report, before + 3, Duration::from_secs(10));
    let last = after.last().unwrap();
    let fd = first[0].split("fd=").nth(1).unwrap();
    assert!(
        last.contains(&format!("fd={fd} count=42 nonblock=1")),
        "restored task reports {last:?}"
    );
}

#[test]
fn plugin_for_another_api_major_is_refused() {
    let Some((plugin_dir, _)) = build_example("abi-future", &["future-api"]) else {
        return;
    };
    let so: PathBuf = plugin_dir.path().join(EXAMPLE_SO);
    let (new, refused) = plugins::load_dirs(&[plugin_dir.path().to_path_buf()], true);
    assert!(new.is_empty());
    let [PluginLoadError::Load(LoadError::ApiVersion { path, .. })] = refused.as_slice() else {
        panic!("{refused:?}");
    };
    assert_eq!(path, &so);
    let msg = refused[0].to_string();
    let host = criu_plugin_api::API_VERSION;
    let future = format!("{}.0", host.major + 1);
    assert!(
        msg.contains(EXAMPLE_SO)
            && msg.contains(&format!(
                "built for plugin API {future}, this criu speaks plugin API {host}"
            ))
            && msg.ends_with("upgrade criu"),
        "{msg}"
    );
    assert!(
        plugins::all()
            .iter()
            .all(|p| p.info().api_version == host || p.info().name != EXAMPLE_NAME)
    );
}

#[test]
fn world_writable_plugin_dir_and_file_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = ScratchDir::new("abi-ww");
    let so = dir.path().join("libx.so");
    std::fs::write(&so, b"").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (new, refused) = plugins::load_dirs(&[dir.path().to_path_buf()], true);
    assert!(new.is_empty());
    let msg = refused[0].to_string();
    assert!(
        msg.contains("writable by others") && msg.contains("0777"),
        "{msg}"
    );

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, refused) = plugins::load_dirs(&[dir.path().to_path_buf()], true);
    let msg = refused[0].to_string();
    assert!(
        msg.contains("plugin file") && msg.contains("libx.so") && msg.contains("0666"),
        "{msg}"
    );
}

/// The `criu-plugin-api` release of this criu (the workspace's version, shared by the
/// tests crate).
const HOST_RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The line abi_stable's report on the modified API is reduced to: the first type that
/// differs, how it is reached from the root module, and the field that differs.
const EXTRA_FIELD: &str = "type FfiFdDesc (reached from PluginMod.claims): the plugin's has \
                           field `extra: u64` that criu's lacks";

/// A plugin built against a newer release of `criu-plugin-api` (crate version 0.99.0, one
/// field more in the fd description it expects) is refused in one line naming
/// the plugin's release then criu's, each once, the first differing field, and saying to
/// upgrade criu.
#[test]
fn plugin_built_against_a_newer_api_release_is_refused() {
    let dir = plugin_abi_support::build_against_modified_api("abi-v2", "0.99.0", add_field);
    let (new, refused) = plugins::load_dirs(&[dir.path().to_path_buf()], true);
    assert!(new.is_empty());
    let msg = chain(&refused[0]);
    eprintln!("refusal: {msg}");
    let so = dir.path().join(EXAMPLE_SO);
    assert!(
        msg.starts_with(&format!(
            "plugin {} was built against criu-plugin-api 0.99.0, this criu uses \
             criu-plugin-api {HOST_RELEASE} (first difference: {EXTRA_FIELD}",
            so.display()
        )) && msg.ends_with("the plugin is newer than this criu; upgrade criu"),
        "{msg}"
    );
    assert_eq!(msg.matches("0.99.0").count(), 1, "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

/// The fd description with one field more, as a later `criu-plugin-api` might have it.
fn add_field(types: String) -> String {
    types
        .replace(
            "    pub file: i32,\n}",
            "    pub file: i32,\n    pub extra: u64,\n}",
        )
        .replace(
            "            file: d.file.as_raw_fd(),\n",
            "            file: d.file.as_raw_fd(),\n            extra: 0,\n",
        )
}

/// Same crate version, but a changed layout (a plugin API changed without a version bump):
/// abi_stable's layout check refuses it, naming the file and the field that differs.
#[test]
fn plugin_with_another_layout_is_refused() {
    let dir = plugin_abi_support::build_against_modified_api("abi-layout", HOST_RELEASE, add_field);
    let (new, refused) = plugins::load_dirs(&[dir.path().to_path_buf()], true);
    assert!(new.is_empty());
    let msg = chain(&refused[0]);
    eprintln!("refusal: {msg}");
    assert!(
        msg.contains(EXAMPLE_SO)
            && msg.contains(&format!(
                "criu-plugin-api {HOST_RELEASE} with another ABI layout than this criu's"
            ))
            && msg.contains(EXTRA_FIELD)
            && msg.contains("216 bytes in the plugin, 208 in criu")
            && msg.ends_with("rebuild the plugin against this criu's criu-plugin-api"),
        "{msg}"
    );
}
