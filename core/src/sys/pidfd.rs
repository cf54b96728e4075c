//! pidfd wrappers (being written).
