//! probe wrappers (being written).
