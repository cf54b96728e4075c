//! kerndat (being written).
