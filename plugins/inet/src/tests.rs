//! Unit tests on real sockets.
