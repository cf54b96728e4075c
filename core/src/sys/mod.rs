//! Thin, documented wrappers over the syscalls the engine needs. The only module with
//! `unsafe`; the rest of the crate is safe code.

pub mod clone3;
pub mod filemap;
pub mod fown;
pub mod kabi;
pub mod kcmp;
pub mod mm_map;
pub mod mount;
pub mod nsenter;
pub mod pidfd;
pub mod probe;
pub mod ptrace;
pub mod remote;
pub mod sysvipc;
pub mod vm;

#[cfg(test)]
mod testutil;
