//! Workload with memfds in every form: memfd "wl-memfd" (sealable, F_SEAL_GROW |
//! F_SEAL_SHRINK, mode 0640, SIZE bytes of pattern) open as two descriptions (fd A read-write
//! at offset 1234, fd B read-only non-blocking at offset 77), mapped MAP_SHARED (M) and
//! MAP_PRIVATE (P, first page rewritten: a private COW copy); memfd "wl-closed" mapped
//! MAP_SHARED (C) whose fd is closed, sealed F_SEAL_FUTURE_WRITE | F_SEAL_SEAL after the
//! mapping. Prints "ready" and idles; on SIGUSR1 it checks everything (contents, offsets,
//! flags, seals, sizes, one inode behind A, B and M, writes through the fd seen through M and
//! back) and prints "ok" or "bad <what>" (also written to the file named by its optional
//! argument, for after a restore).

use std::io::Write;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap};
use nix::unistd::{Whence, lseek};

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
/// Not a whole number of pages: the last page is partly outside the file.
const SIZE: usize = 3 * PAGE + 123;
const CLOSED_SIZE: usize = 2 * PAGE;
const SEALS: i32 = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
const CLOSED_SEALS: i32 = libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 8)) as u8
}

fn closed_pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(3).wrapping_add(1)
}

fn map(fd: BorrowedFd<'_>, len: usize, flags: MapFlags) -> &'static mut [u8] {
    let n = NonZeroUsize::new(len).expect("length");
    // SAFETY: a fresh mapping of our own memfd, never unmapped, only used as bytes.
    let p = unsafe {
        mmap(
            None,
            n,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags,
            fd,
            0,
        )
    }
    .expect("mmap");
    // SAFETY: `len` bytes mapped readable and writable for the life of the process.
    unsafe { std::slice::from_raw_parts_mut(p.as_ptr().cast::<u8>(), len) }
}

struct State {
    a: OwnedFd,
    b: OwnedFd,
    m: &'static mut [u8],
    p: &'static mut [u8],
    c: &'static mut [u8],
}

fn setup() -> State {
    let a = memfd_create(
        "wl-memfd",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .expect("memfd_create");
    let data: Vec<u8> = (0..SIZE).map(pattern).collect();
    nix::unistd::write(&a, &data).expect("write");
    nix::sys::stat::fchmod(&a, nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("fchmod");
    let m = map(a.as_fd(), SIZE, MapFlags::MAP_SHARED);
    let p = map(a.as_fd(), 2 * PAGE, MapFlags::MAP_PRIVATE);
    p[..PAGE].fill(0xab);
    fcntl(
        a.as_fd(),
        FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(SEALS)),
    )
    .expect("seal");
    let b = nix::fcntl::open(
        format!("/proc/self/fd/{}", a.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    )
    .expect("reopen");
    lseek(a.as_fd(), 1234, Whence::SeekSet).expect("lseek");
    lseek(b.as_fd(), 77, Whence::SeekSet).expect("lseek");

    let closed = memfd_create(
        "wl-closed",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .expect("memfd_create");
    nix::unistd::ftruncate(&closed, CLOSED_SIZE as i64).expect("ftruncate");
    let c = map(closed.as_fd(), CLOSED_SIZE, MapFlags::MAP_SHARED);
    for (i, x) in c.iter_mut().enumerate() {
        *x = closed_pattern(i);
    }
    fcntl(
        closed.as_fd(),
        FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(CLOSED_SEALS)),
    )
    .expect("seal");
    drop(closed);
    State { a, b, m, p, c }
}

fn seals(fd: BorrowedFd<'_>) -> i32 {
    fcntl(fd, FcntlArg::F_GET_SEALS).unwrap_or(-1)
}

fn link(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check(s: &mut State) -> Result<(), String> {
    let (a, b) = (s.a.as_fd(), s.b.as_fd());
    let want = |what: &str, ok: bool| if ok { Ok(()) } else { Err(what.to_string()) };
    want("link A", link(a) == "/memfd:wl-memfd (deleted)")?;
    want("offset A", lseek(a, 0, Whence::SeekCur) == Ok(1234))?;
    want("offset B", lseek(b, 0, Whence::SeekCur) == Ok(77))?;
    let fl_a = fcntl(a, FcntlArg::F_GETFL).map_err(|e| format!("F_GETFL: {e}"))?;
    let fl_b = fcntl(b, FcntlArg::F_GETFL).map_err(|e| format!("F_GETFL: {e}"))?;
    want("flags A", fl_a & libc::O_ACCMODE == libc::O_RDWR)?;
    want(
        "flags B",
        fl_b & libc::O_ACCMODE == libc::O_RDONLY && fl_b & libc::O_NONBLOCK != 0,
    )?;
    want("seals", seals(a) == SEALS)?;
    let st = nix::sys::stat::fstat(a).map_err(|e| format!("fstat: {e}"))?;
    want("size", st.st_size == SIZE as i64)?;
    want("mode", st.st_mode & 0o7777 == 0o640)?;
    let st_b = nix::sys::stat::fstat(b).map_err(|e| format!("fstat: {e}"))?;
    want("B's inode", st_b.st_ino == st.st_ino)?;
    let mapped = |addr: *const u8, len: usize| {
        let start = addr as usize;
        std::fs::metadata(format!(
            "/proc/self/map_files/{start:x}-{:x}",
            start + len.div_ceil(PAGE) * PAGE
        ))
        .map(|m| m.ino())
        .unwrap_or(0)
    };
    want("M's inode", mapped(s.m.as_ptr(), SIZE) == st.st_ino)?;
    // Contents (the first 16 bytes are this check's own scratch, below).
    let mut buf = vec![0u8; SIZE];
    nix::sys::uio::pread(a, &mut buf, 0).map_err(|e| format!("pread: {e}"))?;
    if let Some(i) = (16..SIZE).find(|&i| buf[i] != pattern(i)) {
        return Err(format!("file byte {i}"));
    }
    if let Some(i) = (16..SIZE).find(|&i| s.m[i] != pattern(i)) {
        return Err(format!("shared mapping byte {i}"));
    }
    // Private: page 0 is our COW copy, page 1 still the file's.
    want("private page 0", s.p[..PAGE].iter().all(|&x| x == 0xab))?;
    if let Some(i) = (PAGE..2 * PAGE).find(|&i| s.p[i] != pattern(i)) {
        return Err(format!("private mapping byte {i}"));
    }
    // Writes through the fd show in the shared mapping, and back; not in the private page.
    nix::sys::uio::pwrite(a, b"through the fd", 0).map_err(|e| format!("pwrite: {e}"))?;
    want("fd write seen in M", &s.m[..14] == b"through the fd")?;
    s.m[..16].copy_from_slice(b"through the map!");
    let mut back = [0u8; 16];
    nix::sys::uio::pread(b, &mut back, 0).map_err(|e| format!("pread B: {e}"))?;
    want("map write seen by B", &back == b"through the map!")?;
    want("private page untouched", s.p[0] == 0xab)?;
    // The memfd behind the closed fd: contents, seals, still writable through its mapping.
    if let Some(i) = (0..CLOSED_SIZE).find(|&i| s.c[i] != closed_pattern(i)) {
        return Err(format!("closed memfd byte {i}"));
    }
    let start = s.c.as_ptr() as usize;
    let mf = format!("/proc/self/map_files/{start:x}-{:x}", start + CLOSED_SIZE);
    let c_fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&mf)
        .map_err(|e| format!("open {mf}: {e}"))?;
    want("closed memfd seals", seals(c_fd.as_fd()) == CLOSED_SEALS)?;
    want(
        "closed memfd link",
        link(c_fd.as_fd()) == "/memfd:wl-closed (deleted)",
    )?;
    // F_SEAL_FUTURE_WRITE: no new writes, the mapping made before still writes.
    want(
        "closed memfd refuses writes",
        nix::unistd::write(&c_fd, b"x") == Err(nix::errno::Errno::EPERM),
    )?;
    let keep = s.c[5];
    s.c[5] = keep.wrapping_add(1);
    s.c[5] = keep;
    Ok(())
}

fn main() {
    let mut s = setup();
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action) }
        .expect("sigaction");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if VERIFY.swap(false, Ordering::SeqCst) {
            let verdict = match check(&mut s) {
                Ok(()) => "ok".to_string(),
                Err(w) => format!("bad {w}"),
            };
            if let Some(f) = std::env::args().nth(1) {
                let _ = std::fs::write(f, format!("{verdict}\n"));
            }
            println!("{verdict}");
            std::io::stdout().flush().expect("flush");
        }
    }
}
