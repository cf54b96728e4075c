//! clone3 wrappers (being written).
