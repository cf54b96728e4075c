//! ptrace wrappers (being written).
