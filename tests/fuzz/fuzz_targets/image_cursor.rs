//! Arbitrary image bodies through the plugin API's `ImageCursor` and `read_messages`:
//! a truncated or corrupt body is a `PluginError`, never a panic.
//!
//! The first byte picks the walk: 0 `pipes-data.img` style (entry, then its raw bytes),
//! 1 `read_messages` of `remap-fpath.img`, 2 `read_messages` of `files.img`,
//! 3 entry then `rest()`.
#![no_main]

use criu_plugin_api::proto::images::{FileEntry, PipeDataEntry, RemapFilePathEntry};
use criu_plugin_api::testing::MemoryImages;
use criu_plugin_api::{ImageCursor, ImageRef, read_messages};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let mut c = ImageCursor::new(ImageRef::PIPES_DATA, body);
            while let Ok(Some(e)) = c.next_entry::<PipeDataEntry>() {
                if c.raw(e.bytes as usize).is_err() {
                    break;
                }
            }
        }
        1 => {
            let _ = read_from_memory::<RemapFilePathEntry>(ImageRef::REMAP_FPATH, body);
        }
        2 => {
            let _ = read_from_memory::<FileEntry>(ImageRef::FILES, body);
        }
        _ => {
            let mut c = ImageCursor::new(ImageRef::ghost_file(1), body);
            let _ = c.next_entry::<PipeDataEntry>();
            let rest = c.rest();
            assert!(rest.len() <= body.len());
            assert!(c.is_empty());
        }
    }
});

fn read_from_memory<M: prost::Message + Default>(
    image: ImageRef,
    body: &[u8],
) -> Result<Vec<M>, criu_plugin_api::PluginError> {
    let mut ctx = MemoryImages::new(0);
    let name = image
        .kind
        .file_name(image.id)
        .expect("single-file kinds have a name");
    ctx.images.insert(name, body.to_vec());
    read_messages::<M>(&mut ctx, image)
}
