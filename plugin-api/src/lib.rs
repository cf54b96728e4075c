//! plugin api (being written).
