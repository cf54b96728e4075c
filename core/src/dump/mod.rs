//! dump (being written).
