//! The mount namespace of the tree's root (CRIU's `mount.c`, `mountpoints-N.img`).
//!
//! - [`model`]: what a `mnt_entry` says (file system codes, per-mount and superblock flags,
//!   propagation), shared by dump and restore.
//! - [`dump`]: the root's `/proc/PID/mountinfo` classified (new instances of virtual file
//!   systems, tmpfs with contents, binds of criu's own mounts, `--external mnt[PATH]:KEY`)
//!   and written as CRIU's `mountpoints-<nsid>.img`.
//! - [`tmpfs`]: a tmpfs's contents as CRIU's `tmpfs-dev-<dev>.tar.gz.img` (gzip'd tar).
//! - [`tree`]: the image read back and checked (one root, parents that exist, no cycle, no
//!   `..`), ordered parents first.
//! - [`build`]: the restore: a new mount namespace for criu's restoring thread, the tree
//!   mounted under a staging directory, the tree's root entered for path opens
//!   ([`build::in_tree`]), and pivoted into once the tasks exist.

pub mod build;
pub mod dump;
pub mod model;
pub mod mounts;
pub mod restore;
pub mod tmpfs;
pub mod tree;

#[cfg(test)]
mod tests;
