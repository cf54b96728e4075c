//! Workload: anonymous shared memory reached as a file, as in CRIU's zdtm shmemfd-priv. A
//! 5-page `MAP_SHARED|MAP_ANONYMOUS` area S (pages 0-2 written), an fd opened on its
//! `/proc/self/map_files` link, a `MAP_PRIVATE` mapping P of that fd at page 1 (P's page 1
//! rewritten: a private copy) and a second shared mapping S2 of the fd at page 2. Prints
//! "ready" and idles; on SIGUSR1 it checks that P still reads the object where it did not
//! write (also what S writes afterwards), that S2 and S are one object, and that the fd
//! reads the object; prints "ok" or "bad <what>" (also written to the file named by its
//! argument, for after a restore). Each check writes new values, so it can run again.
//! Also an object held only by an fd (zdtm shmemfd): one page mapped shared, its fd opened,
//! cut to 0 bytes, unmapped, then "hello" written: 5 bytes, no mapping left.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous};

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const PAGES: usize = 5;

/// `PAGES` pages at `p` as words, one per page start.
struct Area(*mut u8);

impl Area {
    fn word(&self, page: usize) -> &AtomicI32 {
        assert!(page < PAGES);
        // SAFETY: a mapping of PAGES pages, readable and writable, never unmapped; an
        // aligned i32 at each page start.
        unsafe { &*(self.0.add(page * PAGE).cast::<AtomicI32>()) }
    }
    fn get(&self, page: usize) -> i32 {
        self.word(page).load(Ordering::SeqCst)
    }
    fn set(&self, page: usize, v: i32) {
        self.word(page).store(v, Ordering::SeqCst)
    }
}

fn check_fd_only(f: &std::fs::File) -> Result<(), String> {
    let len = f.metadata().map_err(|e| format!("fstat: {e}"))?.len();
    let mut b = [0u8; 5];
    f.read_exact_at(&mut b, 0)
        .map_err(|e| format!("read the fd-only object: {e}"))?;
    if len != 5 || &b != b"hello" {
        return Err(format!("fd-only object: {len} bytes, {b:?}"));
    }
    Ok(())
}

/// The object held only by an fd.
fn fd_only() -> std::fs::File {
    let one = NonZeroUsize::new(PAGE).expect("size");
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh mapping the kernel places, unmapped below, never accessed.
    let m = unsafe { mmap_anonymous(None, one, rw, MapFlags::MAP_SHARED) }.expect("mmap");
    let at = m.as_ptr() as usize;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/map_files/{at:x}-{:x}", at + PAGE))
        .expect("open map_files");
    f.set_len(0).expect("ftruncate");
    // SAFETY: the mapping above, not referenced anywhere.
    unsafe { nix::sys::mman::munmap(m, PAGE) }.expect("munmap");
    f.write_all_at(b"hello", 0).expect("write");
    f
}

fn check(s: &Area, p: &Area, s2: &Area, fd: &std::fs::File, round: i32) -> Result<(), String> {
    if p.get(1) != 22 {
        return Err(format!("private copy holds {}", p.get(1)));
    }
    if p.get(0) != 11 {
        return Err(format!(
            "private page 0 reads {}, the object has 11",
            p.get(0)
        ));
    }
    if s2.get(0) != 111 {
        return Err(format!("second shared mapping reads {}", s2.get(0)));
    }
    // Through the object: S2 -> S, S -> P (an untouched private page), fd -> S.
    s2.set(1, 300 + round);
    if s.get(3) != 300 + round {
        return Err("the second shared mapping is not the object".into());
    }
    s.set(3, 400 + round);
    if p.get(2) != 400 + round {
        return Err(format!(
            "the private mapping does not read the object (got {})",
            p.get(2)
        ));
    }
    let mut b = [0u8; 4];
    fd.read_exact_at(&mut b, 3 * PAGE as u64)
        .map_err(|e| format!("read the fd: {e}"))?;
    if i32::from_ne_bytes(b) != 400 + round {
        return Err("the fd is not the object".into());
    }
    fd.write_all_at(&(500 + round).to_ne_bytes(), 4 * PAGE as u64)
        .map_err(|e| format!("write the fd: {e}"))?;
    if s.get(4) != 500 + round {
        return Err("a write through the fd is not in the object".into());
    }
    Ok(())
}

fn main() {
    let out = std::env::args().nth(1);
    let len = NonZeroUsize::new(PAGES * PAGE).expect("size");
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh mapping the kernel places, used only through `Area`.
    let s = Area(
        unsafe { mmap_anonymous(None, len, rw, MapFlags::MAP_SHARED) }
            .expect("mmap shared")
            .as_ptr()
            .cast(),
    );
    s.set(0, 1);
    s.set(1, 11);
    s.set(2, 111);
    let at = s.0 as usize;
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!(
            "/proc/self/map_files/{at:x}-{:x}",
            at + PAGES * PAGE
        ))
        .expect("open map_files");
    // SAFETY: fresh mappings of the object the kernel places, used only through `Area`.
    let p = Area(
        unsafe {
            mmap(
                None,
                len,
                rw,
                MapFlags::MAP_PRIVATE,
                fd.as_fd(),
                PAGE as i64,
            )
        }
        .expect("mmap private")
        .as_ptr()
        .cast(),
    );
    // SAFETY: as above.
    let s2 = Area(
        unsafe {
            mmap(
                None,
                len,
                rw,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                2 * PAGE as i64,
            )
        }
        .expect("mmap shared 2")
        .as_ptr()
        .cast(),
    );
    p.set(1, 22);
    let lone = fd_only();
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action) }
        .expect("sigaction");
    println!("ready");
    let mut round = 0;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if VERIFY.swap(false, Ordering::SeqCst) {
            round += 1;
            let verdict = match check(&s, &p, &s2, &fd, round).and_then(|()| check_fd_only(&lone)) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("bad {e}"),
            };
            if let Some(f) = &out {
                let _ = std::fs::write(f, format!("{verdict}\n"));
            }
            println!("{verdict}");
        }
    }
}
