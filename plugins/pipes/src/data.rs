//! Pipe contents: copying them out without consuming them, and putting them back.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, tee};
use nix::unistd::{pipe2, read, write};

/// A failed step: the call and its errno.
pub(crate) type StepError = (&'static str, Errno);

/// What a pipe held at dump time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeData {
    /// The pipe's capacity (`F_GETPIPE_SZ`); `None` in old images.
    pub size: Option<u32>,
    /// The buffered bytes.
    pub bytes: Vec<u8>,
}

/// Copies the bytes buffered in the pipe behind `read_end` (a read end) without consuming
/// them: `tee()` into a private pipe of the same capacity, then read that one.
pub(crate) fn capture(read_end: BorrowedFd<'_>) -> Result<PipeData, StepError> {
    let size = fcntl(read_end, FcntlArg::F_GETPIPE_SZ).map_err(|e| ("fcntl(F_GETPIPE_SZ)", e))?;
    let (steal_r, steal_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| ("pipe2", e))?;
    // The private pipe must hold everything the task's pipe may hold.
    fcntl(steal_w.as_fd(), FcntlArg::F_SETPIPE_SZ(size)).map_err(|e| ("fcntl(F_SETPIPE_SZ)", e))?;
    let len = usize::try_from(size).map_err(|_| ("fcntl(F_GETPIPE_SZ)", Errno::EINVAL))?;
    let n = match tee(
        read_end,
        steal_w.as_fd(),
        len,
        SpliceFFlags::SPLICE_F_NONBLOCK,
    ) {
        Ok(n) => n,
        // Nothing buffered.
        Err(Errno::EAGAIN) => 0,
        Err(e) => return Err(("tee", e)),
    };
    drop(steal_w);
    let mut bytes = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match read(steal_r.as_fd(), &mut bytes[got..]) {
            Ok(0) => return Err(("read", Errno::EIO)),
            Ok(k) => got += k,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(("read", e)),
        }
    }
    Ok(PipeData {
        size: u32::try_from(size).ok(),
        bytes,
    })
}

/// Restores the capacity and the buffered bytes of a new, empty pipe through its write end.
/// The write end must be non-blocking: data that does not fit is an error, not a hang.
pub(crate) fn fill(write_end: BorrowedFd<'_>, data: &PipeData) -> Result<(), StepError> {
    if let Some(size) = data.size {
        let size = i32::try_from(size).map_err(|_| ("fcntl(F_SETPIPE_SZ)", Errno::EINVAL))?;
        fcntl(write_end, FcntlArg::F_SETPIPE_SZ(size)).map_err(|e| ("fcntl(F_SETPIPE_SZ)", e))?;
    }
    let mut done = 0;
    while done < data.bytes.len() {
        match write(write_end, &data.bytes[done..]) {
            Ok(0) => return Err(("write", Errno::EIO)),
            Ok(k) => done += k,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(("write", e)),
        }
    }
    Ok(())
}
