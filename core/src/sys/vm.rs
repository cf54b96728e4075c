//! vm wrappers (being written).
