//! A socket's classic BPF filter (`SO_ATTACH_FILTER`) in CRIU's `sk_opts_entry.so_filter`:
//! read back with `SO_GET_FILTER` at dump, attached again at restore. CRIU stores each
//! `struct sock_filter` as one `u64` built from its fields (`code << 48 | jt << 40 |
//! jf << 32 | k`), not from its bytes, so that an image moves between byte orders.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use crate::OptError;

/// One instruction as CRIU's image holds it.
pub fn encode(f: &libc::sock_filter) -> u64 {
    (u64::from(f.code) << 48) | (u64::from(f.jt) << 40) | (u64::from(f.jf) << 32) | u64::from(f.k)
}

/// One instruction of CRIU's image.
pub fn decode(w: u64) -> libc::sock_filter {
    libc::sock_filter {
        code: (w >> 48) as u16,
        jt: (w >> 40) as u8,
        jf: (w >> 32) as u8,
        k: w as u32,
    }
}

/// `getsockopt(SO_GET_FILTER)` into `buf` (its length counted in instructions); the count.
fn get_filter(fd: BorrowedFd<'_>, buf: &mut [libc::sock_filter]) -> Result<usize, Errno> {
    let mut len = buf.len() as libc::socklen_t;
    let ptr = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: `ptr` is null with a length of 0 (the kernel only answers the count) or
    // points to `len` instructions the kernel may fill.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            ptr,
            &raw mut len,
        )
    };
    Errno::result(r).map(|_| len as usize)
}

/// The classic filter attached to `fd`, CRIU's encoding; empty when there is none. An eBPF
/// program (`SO_ATTACH_BPF`), which has no classic form, fails with `EACCES`.
pub fn dump_filter(fd: BorrowedFd<'_>) -> Result<Vec<u64>, OptError> {
    let err = |source| OptError {
        op: "getsockopt",
        opt: "SO_GET_FILTER",
        source,
    };
    let n = get_filter(fd, &mut []).map_err(err)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let zero = libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let mut prog = vec![zero; n];
    let got = get_filter(fd, &mut prog).map_err(err)?;
    prog.truncate(got);
    Ok(prog.iter().map(encode).collect())
}

/// Attaches the filter `prog` (CRIU's encoding) to `fd`; nothing when it is empty.
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[u64]) -> Result<(), OptError> {
    let err = |source| OptError {
        op: "setsockopt",
        opt: "SO_ATTACH_FILTER",
        source,
    };
    if prog.is_empty() {
        return Ok(());
    }
    let mut insns: Vec<libc::sock_filter> = prog.iter().copied().map(decode).collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(insns.len()).map_err(|_| err(Errno::EINVAL))?,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `fprog` points to `insns`, alive for the call; the kernel copies the program.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn instructions_round_trip(code: u16, jt: u8, jf: u8, k: u32) {
            let f = libc::sock_filter { code, jt, jf, k };
            let back = decode(encode(&f));
            prop_assert_eq!((back.code, back.jt, back.jf, back.k), (code, jt, jf, k));
        }
    }

    #[test]
    fn a_filter_is_read_back_and_attached_again() {
        use std::os::fd::AsFd;
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(dump_filter(a.as_fd()).unwrap().is_empty());
        // "accept 0xffff bytes" and a jump that never happens: ld, jeq, ret, ret.
        let prog = [
            encode(&decode(0x0020_0000_0000_0026)),
            0x0015_0100_7f00_0001,
            0x0006_0000_0000_ffff,
            0x0006_0000_0000_0000,
        ];
        attach_filter(a.as_fd(), &prog).unwrap();
        assert_eq!(dump_filter(a.as_fd()).unwrap(), prog);
        assert_eq!(encode(&decode(prog[1])), prog[1]);
    }
}
