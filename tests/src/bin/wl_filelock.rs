//! File lock workload: opens FILE (created if needed), holds one lock of KIND on it and idles
//! (whoever tests it checks the lock from outside: /proc/PID/fdinfo, a conflicting lock).
//! KIND: `posix` (fcntl F_SETLK write lock on bytes 0-99), `ofd` (F_OFD_SETLK write lock to
//! EOF), `flock` (flock LOCK_EX), `lease` (F_SETLEASE read lease on a read-only fd).
//! Prints `ready` once the lock is held; exits 2 when it cannot take it.
//! Usage: wl_filelock KIND FILE

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

fn record_lock(fd: RawFd, cmd: libc::c_int, len: i64) -> std::io::Result<()> {
    let lock = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: len,
        l_pid: 0,
    };
    // SAFETY: F_SETLK/F_OFD_SETLK read a `struct flock` that lives for the call.
    match unsafe { libc::fcntl(fd, cmd, &lock) } {
        -1 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

fn take(kind: &str, fd: RawFd) -> std::io::Result<()> {
    let rc = match kind {
        "posix" => return record_lock(fd, libc::F_SETLK, 100),
        "ofd" => return record_lock(fd, libc::F_OFD_SETLK, 0),
        // SAFETY: flock on an fd we own.
        "flock" => unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) },
        // SAFETY: F_SETLEASE takes an int argument.
        "lease" => unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) },
        _ => return Err(std::io::Error::other(format!("unknown lock kind {kind}"))),
    };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, path] = args.as_slice() else {
        eprintln!("usage: wl_filelock KIND FILE");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    // A read lease needs a read-only fd (and no writer anywhere).
    let file = if kind == "lease" {
        std::fs::File::open(path)
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
    };
    let file = file.unwrap_or_else(|e| {
        eprintln!("open {path}: {e}");
        std::process::exit(2)
    });
    if let Err(e) = take(kind, file.as_raw_fd()) {
        eprintln!("{kind} lock on {path}: {e}");
        std::process::exit(2);
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_millis(50));
    }
}
