//! files plugin (being written).
