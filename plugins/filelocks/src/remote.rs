//! The system calls a restored task makes to take its locks again, run inside it while it
//! is stopped under the restorer ([`RestoreContext::remote_syscall`]): a lock's owner (a
//! POSIX lock's fd table, the pid a flock or lease records, a lease's SIGIO owner) is the
//! task that calls, so the task itself must make the call.

use std::mem::{offset_of, size_of};

use criu_plugin_api::{PluginError, RestoreContext};

use crate::entry::Range;

/// A task's page for the `struct flock` of its record locks, mapped on first use.
#[derive(Debug)]
pub struct Task {
    /// Restored pid (the leader's tid: any thread shares the fd table).
    pub pid: i32,
    page: Option<u64>,
}

const PAGE: u64 = 4096;

/// `-errno` results as a [`PluginError::Task`] naming what was done.
fn check(pid: i32, r: i64, what: impl FnOnce() -> String) -> Result<i64, PluginError> {
    if (-4095..0).contains(&r) {
        return Err(PluginError::Task {
            pid,
            op: what(),
            source: Box::new(std::io::Error::from_raw_os_error(-r as i32)),
        });
    }
    Ok(r)
}

impl Task {
    /// No call made yet.
    pub fn new(pid: i32) -> Self {
        Task { pid, page: None }
    }

    /// Runs `nr(args)` in the task; `what` names it in the error.
    pub fn call(
        &mut self,
        ctx: &mut dyn RestoreContext,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<i64, PluginError> {
        let r = ctx.remote_syscall(self.pid, nr, args)?;
        check(self.pid, r, what)
    }

    /// `fcntl(fd, cmd, arg)`.
    pub fn fcntl(
        &mut self,
        ctx: &mut dyn RestoreContext,
        fd: i32,
        cmd: i32,
        arg: u64,
        what: impl FnOnce() -> String,
    ) -> Result<i64, PluginError> {
        self.call(
            ctx,
            libc::SYS_fcntl,
            [fd as u64, cmd as u64, arg, 0, 0, 0],
            what,
        )
    }

    /// `fcntl(fd, cmd, &flock)` for a record lock (`F_SETLK`, `F_OFD_SETLK`): the `struct
    /// flock` is written into a scratch page of the task.
    pub fn set_record_lock(
        &mut self,
        ctx: &mut dyn RestoreContext,
        fd: i32,
        cmd: i32,
        range: Range,
        what: impl FnOnce() -> String,
    ) -> Result<(), PluginError> {
        let page = self.page(ctx)?;
        ctx.write_task_memory(self.pid, page, &flock_bytes(range))?;
        self.fcntl(ctx, fd, cmd, page, what).map(|_| ())
    }

    fn page(&mut self, ctx: &mut dyn RestoreContext) -> Result<u64, PluginError> {
        if let Some(p) = self.page {
            return Ok(p);
        }
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let args = [0, PAGE, prot, flags, u64::MAX, 0];
        let p = self.call(ctx, libc::SYS_mmap, args, || {
            "remote mmap of a scratch page for struct flock".into()
        })? as u64;
        self.page = Some(p);
        Ok(p)
    }

    /// Unmaps the scratch page, if one was mapped.
    pub fn finish(&mut self, ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
        let Some(p) = self.page.take() else {
            return Ok(());
        };
        self.call(ctx, libc::SYS_munmap, [p, PAGE, 0, 0, 0, 0], || {
            "remote munmap of the struct flock scratch page".into()
        })
        .map(|_| ())
    }
}

/// `struct flock` for `range` from `SEEK_SET`, as libc lays it out (`l_pid` 0, as
/// `F_OFD_SETLK` requires).
pub fn flock_bytes(range: Range) -> Vec<u8> {
    let mut b = vec![0u8; size_of::<libc::flock>()];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(offset_of!(libc::flock, l_type), &range.ty.to_ne_bytes());
    put(
        offset_of!(libc::flock, l_whence),
        &(libc::SEEK_SET as i16).to_ne_bytes(),
    );
    put(offset_of!(libc::flock, l_start), &range.start.to_ne_bytes());
    put(offset_of!(libc::flock, l_len), &range.len.to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_layout_matches_libc() {
        let b = flock_bytes(Range {
            ty: libc::F_WRLCK as i16,
            start: 5,
            len: 10,
        });
        assert_eq!(b.len(), size_of::<libc::flock>());
        let at = |o: usize| i64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(at(offset_of!(libc::flock, l_start)), 5);
        assert_eq!(at(offset_of!(libc::flock, l_len)), 10);
        let o = offset_of!(libc::flock, l_type);
        assert_eq!(i16::from_ne_bytes([b[o], b[o + 1]]), libc::F_WRLCK as i16);
    }

    #[test]
    fn errno_results_name_the_call() {
        let e = check(7, -(libc::EAGAIN as i64), || "remote flock".into()).unwrap_err();
        assert!(e.to_string().contains("remote flock in task 7"), "{e}");
        assert_eq!(check(7, 3, || unreachable!()).unwrap(), 3);
    }
}
