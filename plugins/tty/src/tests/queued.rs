//! The queued-data round trip on a real pty: whatever bytes one end's input holds, read
//! without waiting and written back through the peer, the input holds again.

use std::os::fd::AsFd;

use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use proptest::prelude::*;

use super::pty;
use crate::queued::{Toward, read_pending, write_through};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Raw mode (no line editing, no signals): any bytes come back as they were, both ways.
    #[test]
    fn queued_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 1..2048)) {
        let (master, slave) = pty(5, 5);
        let mut t = tcgetattr(slave.as_fd()).unwrap();
        cfmakeraw(&mut t);
        tcsetattr(slave.as_fd(), SetArg::TCSANOW, &t).unwrap();
        let (m, s) = (master.as_fd(), slave.as_fd());

        write_through(m, m, Toward::Slave, &data).unwrap();
        prop_assert_eq!(read_pending(s).unwrap(), data.clone());
        write_through(m, s, Toward::Master, &data).unwrap();
        prop_assert_eq!(read_pending(m).unwrap(), data.clone());
        // Nothing left, and the termios as it was.
        prop_assert!(read_pending(s).unwrap().is_empty());
        let after = tcgetattr(s).unwrap();
        prop_assert_eq!(after.local_flags, t.local_flags);
        prop_assert_eq!(after.output_flags, t.output_flags);
        prop_assert_eq!(after.input_flags, t.input_flags);
    }
}
