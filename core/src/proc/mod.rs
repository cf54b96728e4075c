//! proc (being written).
