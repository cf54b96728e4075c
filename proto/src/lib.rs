//! CRIU's image schema and image framing, wire-compatible with CRIU 4.x.
//!
//! - [`images`]: prost types for every message of CRIU's `images/*.proto` (proto2).
//! - [`rpc`]: prost types for `rpc.proto` (the `criu swrk` protocol).
//! - [`descriptor_pool`]: the same schema as a prost-reflect pool, with crit's field options.

use std::sync::OnceLock;

pub mod framing;
pub mod json;
pub mod kind;

/// The reflection crate our descriptor pool and JSON layer are built on.
pub use prost_reflect;

pub use framing::{FramingError, RawEntry, RawImage};
pub use kind::{ExtraPayload, Framing, ImageKind};

/// Generated types for CRIU's image messages (`core_entry` is [`images::CoreEntry`], ...).
#[allow(clippy::all, missing_debug_implementations, missing_docs)]
pub mod images {
    include!(concat!(env!("OUT_DIR"), "/images/_.rs"));
}

/// Generated types for CRIU's RPC protocol (`rpc.proto`).
#[allow(clippy::all, missing_debug_implementations, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/rpc/_.rs"));
}

/// Field numbers criu-rs keeps for the fields it adds to CRIU's own messages (listed in
/// `proto/tools/criu-rs-fields.txt` and the README): far above CRIU's (1-71 so far), below
/// 2048 (two-byte tags) and protobuf's reserved 19000-19999. CRIU and crit skip them as
/// unknown fields.
pub const CRIU_RS_FIELDS: std::ops::RangeInclusive<u32> = 1001..=1999;

/// Encoded `FileDescriptorSet` of all CRIU `.proto` files (imports included).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/criu.fds"));

/// The descriptor pool of the whole schema, built once.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: OnceLock<prost_reflect::DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The bytes were produced by protox in build.rs from the same files; failing to
        // decode them would be a build defect, not bad input.
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("embedded descriptor set is valid")
    })
}
