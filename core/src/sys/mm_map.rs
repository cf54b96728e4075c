//! mm_map wrappers (being written).
