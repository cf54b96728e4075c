//! Workload living on removed files (CRIU's unlink_mmap and cwd01/cwd02 tests, in one
//! program). MODE:
//! - `mmap`: DIR/mapped (3 pages of a pattern) mapped MAP_SHARED and MAP_PRIVATE, its fd
//!   closed, the file unlinked; then the shared mapping is written (the change lives only in
//!   the removed file) and the private one's first page rewritten (a private copy).
//! - `cwd`: DIR/gone created, held open as a fd, made the cwd, then removed.
//!
//! Prints "ready" and idles; on SIGUSR1 it checks its state (contents of both mappings and
//! that they still map a removed file; the cwd's link and inode against the held fd) and
//! prints "ok" or "bad <what>", also written to VERDICT for after a restore.
//! Usage: wl_unlinked MODE DIR VERDICT

use std::io::Write;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::mman::{MapFlags, ProtFlags, mmap};

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const SIZE: usize = 3 * PAGE;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(13) ^ (i >> 9)) as u8
}

fn map(file: &std::fs::File, flags: MapFlags) -> &'static mut [u8] {
    let n = NonZeroUsize::new(SIZE).expect("length");
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh mapping of our own file, never unmapped, only used as bytes.
    let p = unsafe { mmap(None, n, prot, flags, file.as_fd(), 0) }.expect("mmap");
    // SAFETY: SIZE bytes mapped readable and writable for the life of the process.
    unsafe { std::slice::from_raw_parts_mut(p.as_ptr().cast::<u8>(), SIZE) }
}

/// Shared: pattern with its last byte set to 0x5a after the unlink. Private: first page 0xee.
fn shared_want(i: usize) -> u8 {
    if i == SIZE - 1 { 0x5a } else { pattern(i) }
}

/// Pages never written privately still show the file, shared change included.
fn private_want(i: usize) -> u8 {
    if i < PAGE { 0xee } else { shared_want(i) }
}

struct Mmaps {
    shared: &'static mut [u8],
    private: &'static mut [u8],
}

fn setup_mmap(dir: &str) -> Mmaps {
    let path = format!("{dir}/mapped");
    let data: Vec<u8> = (0..SIZE).map(pattern).collect();
    std::fs::write(&path, &data).expect("write file");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open file");
    let shared = map(&file, MapFlags::MAP_SHARED);
    let private = map(&file, MapFlags::MAP_PRIVATE);
    drop(file);
    std::fs::remove_file(&path).expect("unlink");
    shared[SIZE - 1] = 0x5a;
    private[..PAGE].fill(0xee);
    Mmaps { shared, private }
}

fn check_mmap(m: &Mmaps) -> Result<(), String> {
    if let Some(i) = (0..SIZE).find(|&i| m.shared[i] != shared_want(i)) {
        return Err(format!("shared byte {i} is {:#x}", m.shared[i]));
    }
    if let Some(i) = (0..SIZE).find(|&i| m.private[i] != private_want(i)) {
        return Err(format!("private byte {i} is {:#x}", m.private[i]));
    }
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
    let deleted = maps
        .lines()
        // After a restore the name is the ghost's (`mapped.cr.<id>.ghost`), as with CRIU.
        .filter(|l| l.contains("/mapped") && l.ends_with(" (deleted)"))
        .count();
    if deleted != 2 {
        return Err(format!("{deleted} mappings of the removed file, want 2"));
    }
    Ok(())
}

struct Cwd {
    held: std::fs::File,
    link: std::path::PathBuf,
}

fn setup_cwd(dir: &str) -> Cwd {
    let gone = format!("{dir}/gone");
    std::fs::create_dir(&gone).expect("mkdir");
    let held = std::fs::File::open(&gone).expect("open dir");
    std::env::set_current_dir(&gone).expect("chdir");
    std::fs::remove_dir(&gone).expect("rmdir");
    let link = std::fs::read_link("/proc/self/cwd").expect("cwd link");
    Cwd { held, link }
}

fn check_cwd(c: &Cwd) -> Result<(), String> {
    let link = std::fs::read_link("/proc/self/cwd").map_err(|e| e.to_string())?;
    if link != c.link {
        return Err(format!(
            "cwd is {}, was {}",
            link.display(),
            c.link.display()
        ));
    }
    let cwd = std::fs::metadata("/proc/self/cwd").map_err(|e| e.to_string())?;
    let held = c.held.metadata().map_err(|e| e.to_string())?;
    if (cwd.dev(), cwd.ino()) != (held.dev(), held.ino()) {
        return Err("the cwd and the held fd are different directories".into());
    }
    if cwd.nlink() != 0 {
        return Err(format!(
            "the cwd has {} links, want 0 (removed)",
            cwd.nlink()
        ));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, dir, verdict] = args.as_slice() else {
        eprintln!("usage: wl_unlinked mmap|cwd DIR VERDICT");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    let check: Box<dyn Fn() -> Result<(), String>> = match mode.as_str() {
        "mmap" => {
            let m = setup_mmap(dir);
            Box::new(move || check_mmap(&m))
        }
        "cwd" => {
            let c = setup_cwd(dir);
            Box::new(move || check_cwd(&c))
        }
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    println!("ready");
    loop {
        if VERIFY.swap(false, Ordering::SeqCst) {
            let line = match check() {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("bad {e}"),
            };
            // The file first: after a restore nobody may read our stdout any more.
            let _ = std::fs::write(verdict, format!("{line}\n"));
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
