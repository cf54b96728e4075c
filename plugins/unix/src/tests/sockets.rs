//! The queue code on real sockets of the test process: peeks, refills, fds in flight.

use std::os::fd::AsFd;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, socketpair};

use crate::queue::{self, Packet};

fn pair(ty: SockType) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// Peeking reads every message without consuming it and puts SO_PEEK_OFF back; sending
/// the packets into a fresh pair gives the same messages.
#[test]
fn peek_leaves_the_queue_and_refill_keeps_boundaries() {
    use std::os::fd::AsRawFd;
    for ty in [SockType::Datagram, SockType::SeqPacket, SockType::Stream] {
        let (a, b) = pair(ty);
        let msgs: [&[u8]; 3] = [b"one", &[7u8; 100_000], b"three"];
        for m in msgs {
            queue::send(a.as_fd(), None, m, None, &[]).unwrap();
        }
        let datagrams = ty != SockType::Stream;
        let got: Vec<Packet> = queue::peek(b.as_fd(), datagrams, ty == SockType::Datagram, None)
            .unwrap()
            .into_iter()
            .map(|p| p.packet)
            .collect();
        let off = crate::sys::get_int(b.as_fd(), libc::SOL_SOCKET, crate::sys::SO_PEEK_OFF);
        assert_eq!(off, Ok(-1), "{ty:?}: SO_PEEK_OFF put back");
        let cred = crate::sys::get_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED);
        assert_eq!(cred, Ok(0), "{ty:?}: SO_PASSCRED put back");
        let total: Vec<u8> = got.iter().flat_map(|p| p.data.clone()).collect();
        assert_eq!(total, msgs.concat(), "{ty:?}");
        if datagrams {
            assert_eq!(got.len(), 3, "{ty:?}: one packet per message");
        }
        // Still queued, whole.
        let mut buf = vec![0u8; 200_000];
        let n = recv(b.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
        assert_eq!(&buf[..n], &msgs.concat()[..n], "{ty:?}");
        // Refilled elsewhere: the same messages.
        let (c, d) = pair(ty);
        for p in &got {
            queue::send(c.as_fd(), None, &p.data, p.creds, &[]).unwrap();
        }
        if datagrams {
            for m in msgs {
                let n = recv(d.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
                assert_eq!(&buf[..n], m, "{ty:?}");
            }
        }
    }
}

/// A seqpacket socket whose peer shut down answers 0 past its last record: the peek ends
/// there instead of looping, and keeps an empty record that came before.
#[test]
fn seqpacket_peek_ends_at_the_peers_shutdown() {
    use std::os::fd::AsRawFd;
    let (a, b) = pair(SockType::SeqPacket);
    queue::send(a.as_fd(), None, b"rec", None, &[]).unwrap();
    queue::send(a.as_fd(), None, b"", None, &[]).unwrap();
    queue::send(a.as_fd(), None, b"last", None, &[]).unwrap();
    nix::sys::socket::shutdown(a.as_raw_fd(), nix::sys::socket::Shutdown::Write).unwrap();
    let got = queue::peek(b.as_fd(), true, false, Some(7)).unwrap();
    let data: Vec<&[u8]> = got.iter().map(|p| p.packet.data.as_slice()).collect();
    assert_eq!(data, [&b"rec"[..], b"", b"last"]);
}

/// Fds in flight: a peek hands out criu's own duplicates with their message (same open file
/// description), leaves them queued, and a refill sends them again in order.
#[test]
fn peek_takes_fds_in_flight_and_refill_sends_them() {
    use std::os::fd::AsRawFd;
    for ty in [SockType::Datagram, SockType::SeqPacket, SockType::Stream] {
        let (a, b) = pair(ty);
        let (p0, p1) = nix::unistd::pipe().unwrap();
        queue::send(a.as_fd(), None, b"plain", None, &[]).unwrap();
        queue::send(
            a.as_fd(),
            None,
            b"fds",
            None,
            &[p0.as_raw_fd(), p1.as_raw_fd()],
        )
        .unwrap();
        let datagrams = ty != SockType::Stream;
        let got = queue::peek(b.as_fd(), datagrams, ty == SockType::Datagram, None).unwrap();
        let with_fds = got.iter().find(|p| !p.fds.is_empty()).expect("the fds");
        assert_eq!(with_fds.fds.len(), 2, "{ty:?}");
        let ino = |f: std::os::fd::BorrowedFd<'_>| nix::sys::stat::fstat(f).unwrap().st_ino;
        assert_eq!(ino(with_fds.fds[0].as_fd()), ino(p0.as_fd()), "{ty:?}");
        assert_eq!(ino(with_fds.fds[1].as_fd()), ino(p1.as_fd()), "{ty:?}");
        let data: Vec<&[u8]> = got.iter().map(|p| p.packet.data.as_slice()).collect();
        if datagrams {
            assert_eq!(data, [&b"plain"[..], b"fds"], "{ty:?}");
            assert!(got[0].fds.is_empty(), "{ty:?}");
        } else {
            // A stream's writes before the one carrying fds come glued to it.
            assert_eq!(data, [&b"plainfds"[..]], "{ty:?}");
        }
        // Still queued with its fds.
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let raws: Vec<std::os::fd::RawFd> = loop {
            let m = nix::sys::socket::recvmsg::<()>(
                b.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            )
            .unwrap();
            let fds: Vec<_> = m
                .cmsgs()
                .unwrap()
                .filter_map(|c| match c {
                    nix::sys::socket::ControlMessageOwned::ScmRights(f) => Some(f),
                    _ => None,
                })
                .flatten()
                .collect();
            if !fds.is_empty() {
                break fds;
            }
        };
        let owned: Vec<_> = raws.into_iter().map(crate::sys::own_received).collect();
        assert_eq!(ino(owned[0].as_fd()), ino(p0.as_fd()), "{ty:?}");
    }
}

/// A peek raises criu's soft `RLIMIT_NOFILE` to the hard one, so that a message's fds fit
/// where the soft limit would truncate them (`MSG_CTRUNC`); with no room left it fails
/// naming the limit. Runs itself again under `prlimit` (the limit is per process).
#[test]
fn peek_raises_the_fd_limit_for_fds_in_flight() {
    use std::os::fd::AsRawFd;
    const ENV: &str = "CRIU_RS_UNIX_LOW_NOFILE";
    let Ok(mode) = std::env::var(ENV) else {
        let me = std::env::current_exe().expect("test binary");
        for (mode, limits) in [("raise", "--nofile=64:1024"), ("stuck", "--nofile=64:64")] {
            let out = match std::process::Command::new("prlimit")
                .arg(limits)
                .arg(&me)
                .args([
                    "--exact",
                    "tests::sockets::peek_raises_the_fd_limit_for_fds_in_flight",
                ])
                .args(["--test-threads", "1", "--nocapture"])
                .env(ENV, mode)
                .output()
            {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("skipping: no prlimit ({e})");
                    return;
                }
            };
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{mode}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return;
    };
    let (a, b) = pair(SockType::Datagram);
    let files: Vec<std::os::fd::OwnedFd> = (0..8)
        .map(|_| std::fs::File::open("/dev/null").expect("/dev/null").into())
        .collect();
    let raws: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    queue::send(a.as_fd(), None, b"many", None, &raws).unwrap();
    drop(files);
    // Fill the table up to the soft limit: the peek cannot install 8 more.
    let mut hold = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hold.push(f);
    }
    hold.truncate(hold.len().saturating_sub(2));
    let got = queue::peek(b.as_fd(), true, false, None);
    if mode == "raise" {
        let got = got.expect("peek after raising the limit");
        assert_eq!(got[0].fds.len(), 8);
    } else {
        let e = got.expect_err("no room for the fds").to_string();
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
    }
}

#[test]
fn names_and_addresses_convert() {
    for name in [&b"/tmp/x.sock"[..], b"\0abstract\0with nul"] {
        let a = queue::addr_of(name).unwrap();
        assert_eq!(queue::name_of(Some(&a)), name);
    }
    assert!(queue::name_of(None).is_empty());
}
