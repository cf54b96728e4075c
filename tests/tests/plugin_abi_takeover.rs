//! A loaded plugin takes a resource over from a built-in one by declaring a lower priority
//! number: with the built-in `eventfd` plugin linked in, the example `.so`
//! (`example-eventfd`, priority 90) is the one asked first for an eventfd, at dump and at
//! restore; without it, the built-in one is.

use std::os::fd::AsFd;

use criu_core::plugins::{self, Origin};
use criu_plugin_api::testing::own_fd_desc;
use criu_plugin_api::{find_fd_handler, find_restore_handler};
use criu_proto::images::{FdTypes, FileEntry};
use nix::sys::eventfd::{EfdFlags, EventFd};

use criu_plugin_eventfd as _;
use criu_plugin_files as _;

mod plugin_abi_support;

use plugin_abi_support::{EXAMPLE_NAME, EXAMPLE_SO, build_example};

#[test]
fn loaded_example_takes_eventfds_over_from_the_builtin() {
    let efd = EventFd::from_value_and_flags(1, EfdFlags::EFD_NONBLOCK).expect("eventfd");
    let desc = own_fd_desc(efd.as_fd()).expect("describe");
    let entry = FileEntry {
        r#type: FdTypes::Eventfd as i32,
        id: 1,
        ..Default::default()
    };
    let name = |p: &dyn criu_plugin_api::Plugin| p.info().name;
    let before = plugins::all();
    assert_eq!(
        name(find_fd_handler(&before, &desc).unwrap().plugin),
        "eventfd"
    );

    let Some((plugin_dir, _)) = build_example("abi-takeover", &[]) else {
        return;
    };
    let (new, refused) = plugins::load_dirs(&[plugin_dir.path().to_path_buf()], true);
    assert!(refused.is_empty() && new.len() == 1, "{refused:?}");
    let after = plugins::all();
    assert_eq!(
        name(find_fd_handler(&after, &desc).unwrap().plugin),
        EXAMPLE_NAME
    );
    assert_eq!(
        name(find_restore_handler(&after, &entry).unwrap().plugin),
        EXAMPLE_NAME
    );
    let listed = plugins::listing();
    let origin = |n: &str| {
        listed
            .iter()
            .find(|l| l.info.name == n)
            .map(|l| l.origin.clone())
    };
    assert_eq!(origin("eventfd"), Some(Origin::BuiltIn));
    assert_eq!(
        origin(EXAMPLE_NAME),
        Some(Origin::File(plugin_dir.path().join(EXAMPLE_SO)))
    );
}
