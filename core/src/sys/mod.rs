//! Thin, documented wrappers over the syscalls the engine needs. The rest of the crate is
//! safe code.
