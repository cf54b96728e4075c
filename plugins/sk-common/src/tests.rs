//! Options set on a real socket come back through dump and restore on a new one.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use crate::{opts, sys, unix_opts};

fn tcp() -> OwnedFd {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket")
}

#[test]
fn options_round_trip_onto_a_new_socket() {
    let a = tcp();
    let f = a.as_fd();
    let s = |opt, v| sys::set_int(f, libc::SOL_SOCKET, opt, v).expect("setsockopt");
    s(libc::SO_SNDBUF, 65536);
    s(libc::SO_RCVLOWAT, 7);
    s(libc::SO_PRIORITY, 3);
    s(libc::SO_REUSEADDR, 1);
    s(libc::SO_REUSEPORT, 1);
    s(libc::SO_KEEPALIVE, 1);
    s(libc::SO_BROADCAST, 1);
    s(libc::SO_OOBINLINE, 1);
    s(sys::SO_MARK, 42);
    sys::set_int(f, libc::SOL_TCP, libc::TCP_KEEPIDLE, 77).expect("TCP_KEEPIDLE");
    sys::set_bytes(f, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, b"lo").expect("bindtodevice");
    let mut before = opts::dump(f).expect("dump");
    opts::dump_tcp_keepalive(f, &mut before).expect("keepalive");
    assert_eq!(before.so_bound_dev.as_deref(), Some("lo"));
    assert_eq!(before.tcp_keepidle, Some(77));
    assert_eq!(before.so_mark, Some(42));

    let b = tcp();
    opts::restore_bound_dev(b.as_fd(), &before).expect("restore dev");
    opts::restore(b.as_fd(), &before).expect("restore");
    let mut after = opts::dump(b.as_fd()).expect("dump again");
    opts::dump_tcp_keepalive(b.as_fd(), &mut after).expect("keepalive again");
    assert_eq!(before, after);
}

#[test]
fn defaults_set_nothing_that_was_off() {
    let a = tcp();
    let before = opts::dump(a.as_fd()).expect("dump");
    assert_eq!(before.so_keepalive, Some(false));
    assert_eq!(before.so_bound_dev, None);
    let b = tcp();
    opts::restore(b.as_fd(), &before).expect("restore");
    assert_eq!(opts::dump(b.as_fd()).expect("dump again"), before);
}

/// The unix-only options (`SO_PEEK_OFF`, `SO_PASSPIDFD`, `SO_PASSRIGHTS`) ride along with
/// the generic ones.
#[test]
fn unix_options_round_trip_onto_a_new_socket() {
    let pair = || {
        nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair")
    };
    let (a, _a2) = pair();
    let f = a.as_fd();
    let s = |opt, v| sys::set_int(f, libc::SOL_SOCKET, opt, v).expect("setsockopt");
    s(libc::SO_PASSCRED, 1);
    s(sys::SO_PEEK_OFF, 3);
    s(libc::SO_RCVBUF, 50000);
    let pidfd = sys::set_int(f, libc::SOL_SOCKET, sys::SO_PASSPIDFD, 1).is_ok();
    let rights = sys::set_int(f, libc::SOL_SOCKET, sys::SO_PASSRIGHTS, 0).is_ok();
    let before = unix_opts::dump(f).expect("dump");
    assert_eq!(before.criu_rs_peek_off, Some(3));
    assert_eq!(before.so_passcred, Some(true));
    assert_eq!(before.criu_rs_passpidfd, pidfd.then_some(true));
    assert_eq!(before.criu_rs_passrights, rights.then_some(false));

    let (b, _b2) = pair();
    opts::restore_buffers(b.as_fd(), &before).expect("buffers");
    unix_opts::restore_rest(b.as_fd(), &before).expect("restore");
    assert_eq!(unix_opts::dump(b.as_fd()).expect("dump again"), before);
}
