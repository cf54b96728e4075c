//! Wire-level properties the image format depends on.

use criu_proto::images::{CoreEntry, PagemapEntry, TaskCoreEntry, core_entry::March};
use prost::Message;

#[test]
fn required_scalars_are_always_encoded() {
    let e = PagemapEntry::default();
    // vaddr (tag 1) and compat_nr_pages (tag 2) are required: both present even when zero.
    assert_eq!(e.encode_to_vec(), vec![0x08, 0x00, 0x10, 0x00]);
}

#[test]
fn fields_are_encoded_in_field_number_order() {
    let core = CoreEntry {
        mtype: March::X8664 as i32,
        tc: Some(TaskCoreEntry::default()),
        ti_arm: None,
        ..Default::default()
    };
    let bytes = core.encode_to_vec();
    // mtype (1) first, then tc (3).
    assert_eq!(bytes[0], 0x08);
    assert_eq!(bytes[2], (3 << 3) | 2);
}

#[test]
fn descriptor_pool_has_criu_option() {
    let pool = criu_proto::descriptor_pool();
    assert!(pool.get_message_by_name("core_entry").is_some());
    assert!(pool.get_extension_by_name("criu").is_some());
}
