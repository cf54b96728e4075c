//! Workload with a hugetlb memfd (`MFD_HUGETLB | MFD_HUGE_2MB`, one 2 MiB page) mapped
//! MAP_SHARED and kept open. Prints "ready" (or "nohuge" and exits 0 when the kernel gives no
//! huge page) and idles; on SIGUSR1 it checks the pattern through the mapping and through
//! the fd, prints "ok" or "bad <what>" (also into the file named by its optional argument).

use std::io::Write;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap};

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const SIZE: usize = 2 << 20;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(13) ^ (i >> 12)) as u8
}

fn main() {
    let flags = MFdFlags::MFD_CLOEXEC
        | MFdFlags::from_bits_retain(libc::MFD_HUGETLB | (21 << libc::MFD_HUGE_SHIFT));
    let Ok(fd) = memfd_create("wl-huge", flags) else {
        println!("nohuge");
        return;
    };
    if nix::unistd::ftruncate(&fd, SIZE as i64).is_err() {
        println!("nohuge");
        return;
    }
    let len = NonZeroUsize::new(SIZE).expect("length");
    // SAFETY: a fresh shared mapping of our own memfd, used only as bytes below.
    let Ok(p) = (unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
            fd.as_fd(),
            0,
        )
    }) else {
        println!("nohuge");
        return;
    };
    // SAFETY: SIZE bytes mapped readable and writable for the life of the process.
    let mem: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(p.as_ptr().cast::<u8>(), SIZE) };
    for (i, b) in mem.iter_mut().enumerate() {
        *b = pattern(i);
    }
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
            let mut via_fd = vec![0u8; 4096];
            let bad = if let Some(i) = (0..SIZE).find(|&i| mem[i] != pattern(i)) {
                Some(format!("mapping byte {i}"))
            } else if nix::sys::uio::pread(&fd, &mut via_fd, 4096).map(|n| n == 4096) != Ok(true)
                || (0..4096).any(|i| via_fd[i] != pattern(4096 + i))
            {
                Some("read through the fd".to_string())
            } else {
                None
            };
            let verdict = bad.map_or("ok".to_string(), |w| format!("bad {w}"));
            if let Some(f) = std::env::args().nth(1) {
                let _ = std::fs::write(f, format!("{verdict}\n"));
            }
            println!("{verdict}");
            std::io::stdout().flush().expect("flush");
        }
    }
}
