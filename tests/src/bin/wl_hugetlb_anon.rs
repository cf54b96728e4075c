//! Workload: anonymous hugetlb memory, as in CRIU's zdtm maps09. A 4 MiB
//! `MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB` area S and a 4 MiB `MAP_PRIVATE` one P, their first
//! and last 4 KiB written with patterns. Prints "ready" and idles; on SIGUSR1 it checks the
//! contents, that both are still hugetlb memory of 2 MiB pages on the device they had
//! (`/proc/self/smaps`), and that S is shared and P private (a forked child writes to both:
//! only S's write reaches us); prints "ok" or "bad <what>" (also written to the file named by
//! its argument, for after a restore).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const SIZE: usize = 4 << 20;
const PAGE: usize = 4096;

fn pattern(seed: u8, i: usize) -> u8 {
    (i.wrapping_mul(13) as u8) ^ seed
}

/// (device, KernelPageSize line, path) of the mapping starting at `addr`.
fn mapping(addr: usize) -> Option<(String, String, String)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let head = format!("{addr:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    let first: Vec<String> = lines
        .next()?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let kps = lines
        .find(|l| l.starts_with("KernelPageSize:"))?
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    Some((first.get(3)?.clone(), kps, first[5..].join(" ")))
}

fn area(flags: MapFlags) -> &'static mut [u8] {
    let len = NonZeroUsize::new(SIZE).expect("size");
    // SAFETY: a fresh mapping the kernel places, never unmapped, used only as bytes.
    let p = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags | MapFlags::MAP_HUGETLB,
        )
    }
    .expect("mmap hugetlb");
    // SAFETY: SIZE bytes mapped readable and writable for the life of the process.
    unsafe { std::slice::from_raw_parts_mut(p.as_ptr().cast::<u8>(), SIZE) }
}

fn fill(m: &mut [u8], seed: u8) {
    for i in (0..PAGE).chain(SIZE - PAGE..SIZE) {
        m[i] = pattern(seed, i);
    }
}

fn check(s: &mut [u8], p: &mut [u8], before: &[(String, String, String)]) -> Result<(), String> {
    for (m, seed, what) in [(&*s, 1u8, "shared"), (&*p, 2u8, "private")] {
        if let Some(i) = (0..PAGE)
            .chain(SIZE - PAGE..SIZE)
            .find(|&i| m[i] != pattern(seed, i))
        {
            return Err(format!("{what} byte {i}"));
        }
    }
    let now = [
        mapping(s.as_ptr() as usize).ok_or("no shared mapping")?,
        mapping(p.as_ptr() as usize).ok_or("no private mapping")?,
    ];
    if now != before {
        return Err(format!("mappings {now:?}, were {before:?}"));
    }
    // A child writes to both: the shared write reaches us, the private one does not.
    // SAFETY: single-threaded program; the child only writes memory and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            s[PAGE / 2] ^= 0xff;
            p[PAGE / 2] ^= 0xff;
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).map_err(|e| format!("wait: {e}"))?;
        }
    }
    let shared_ok = s[PAGE / 2] == pattern(1, PAGE / 2) ^ 0xff;
    s[PAGE / 2] = pattern(1, PAGE / 2);
    if !shared_ok {
        return Err("the shared area is not shared with a child".into());
    }
    if p[PAGE / 2] != pattern(2, PAGE / 2) {
        return Err("the private area took a child's write".into());
    }
    Ok(())
}

fn main() {
    let out = std::env::args().nth(1);
    let s = area(MapFlags::MAP_SHARED);
    let p = area(MapFlags::MAP_PRIVATE);
    fill(s, 1);
    fill(p, 2);
    let before = [
        mapping(s.as_ptr() as usize).expect("shared mapping"),
        mapping(p.as_ptr() as usize).expect("private mapping"),
    ];
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action) }
        .expect("sigaction");
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if VERIFY.swap(false, Ordering::SeqCst) {
            let verdict = match check(s, p, &before) {
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
