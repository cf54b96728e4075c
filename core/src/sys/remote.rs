//! remote wrappers (being written).
