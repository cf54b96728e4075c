//! pipes plugin (being written).
