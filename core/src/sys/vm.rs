//! Copying another process's memory: `process_vm_readv`/`process_vm_writev` (batched iovecs,
//! partial transfers resumed) and `/proc/PID/mem` (pread/pwrite, which also reaches pages that
//! are not readable by protection, e.g. PROT_NONE or write-only text patches).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::Pid;

/// Errors of remote memory access.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{call} on pid {pid} at {addr:#x} (+{len} bytes) failed")]
    Syscall {
        call: &'static str,
        pid: i32,
        addr: u64,
        len: usize,
        #[source]
        source: Errno,
    },
    #[error("{call} on pid {pid}: no progress at {addr:#x} (unmapped or unreadable page)")]
    Fault {
        call: &'static str,
        pid: i32,
        addr: u64,
    },
    #[error("local buffer holds {local} bytes but the remote ranges add up to {remote}")]
    LengthMismatch { local: usize, remote: usize },
    #[error("opening {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{call} on {path} at {addr:#x} (+{len} bytes) failed")]
    Io {
        call: &'static str,
        path: String,
        addr: u64,
        len: usize,
        #[source]
        source: std::io::Error,
    },
}

/// A range of the remote address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteRange {
    pub addr: u64,
    pub len: usize,
}

/// Kernel limit on iovecs per call (UIO_MAXIOV).
const IOV_MAX: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// Moves bytes between `local` and the concatenation of `remote` ranges, resuming after
/// partial transfers. Stops early (returning the count moved) at the first range the kernel
/// makes no progress on when `stop_at_fault`, else fails with [`VmError::Fault`].
fn transfer(
    pid: Pid,
    dir: Dir,
    local: *mut u8,
    local_len: usize,
    remote: &[RemoteRange],
    stop_at_fault: bool,
) -> Result<usize, VmError> {
    let call = match dir {
        Dir::Read => "process_vm_readv",
        Dir::Write => "process_vm_writev",
    };
    let total: usize = remote.iter().map(|r| r.len).sum();
    if total != local_len {
        return Err(VmError::LengthMismatch {
            local: local_len,
            remote: total,
        });
    }
    let mut done = 0usize;
    // Position inside `remote`: index and offset into that range.
    let (mut idx, mut off) = (0usize, 0usize);
    let mut riov: Vec<libc::iovec> = Vec::with_capacity(IOV_MAX.min(remote.len()));
    while done < total {
        while idx < remote.len() && off == remote[idx].len {
            idx += 1;
            off = 0;
        }
        riov.clear();
        let mut batch = 0usize;
        for (i, r) in remote[idx..].iter().enumerate().take(IOV_MAX) {
            let skip = if i == 0 { off } else { 0 };
            if r.len == skip {
                continue;
            }
            riov.push(libc::iovec {
                iov_base: (r.addr as usize + skip) as *mut libc::c_void,
                iov_len: r.len - skip,
            });
            batch += r.len - skip;
        }
        let liov = libc::iovec {
            // SAFETY: done < total = local_len, so the pointer stays inside the buffer.
            iov_base: unsafe { local.add(done) }.cast(),
            iov_len: batch,
        };
        // SAFETY: liov covers `batch` bytes of the caller's buffer; riov are remote addresses
        // the kernel validates itself.
        let n = unsafe {
            match dir {
                Dir::Read => libc::process_vm_readv(
                    pid.as_raw(),
                    &liov,
                    1,
                    riov.as_ptr(),
                    riov.len() as _,
                    0,
                ),
                Dir::Write => libc::process_vm_writev(
                    pid.as_raw(),
                    &liov,
                    1,
                    riov.as_ptr(),
                    riov.len() as _,
                    0,
                ),
            }
        };
        let at = remote[idx].addr + off as u64;
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            // EFAULT on the first remote page = nothing readable there.
            if e == Errno::EFAULT && stop_at_fault {
                return Ok(done);
            }
            return Err(VmError::Syscall {
                call,
                pid: pid.as_raw(),
                addr: at,
                len: batch,
                source: e,
            });
        }
        let mut n = n as usize;
        if n == 0 {
            if stop_at_fault {
                return Ok(done);
            }
            return Err(VmError::Fault {
                call,
                pid: pid.as_raw(),
                addr: at,
            });
        }
        done += n;
        // Advance the remote cursor by n bytes.
        while n > 0 {
            let left = remote[idx].len - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                idx += 1;
                off = 0;
            }
        }
    }
    Ok(done)
}

/// Reads exactly `buf.len()` bytes at `addr` of `pid`; an unreadable page is an error.
pub fn read_exact(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), VmError> {
    let r = [RemoteRange {
        addr,
        len: buf.len(),
    }];
    transfer(pid, Dir::Read, buf.as_mut_ptr(), buf.len(), &r, false).map(drop)
}

/// Reads up to `buf.len()` bytes at `addr`; returns how many were read before the first
/// unreadable page.
pub fn read_partial(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<usize, VmError> {
    let r = [RemoteRange {
        addr,
        len: buf.len(),
    }];
    transfer(pid, Dir::Read, buf.as_mut_ptr(), buf.len(), &r, true)
}

/// Gathers many remote ranges (e.g. the dirty pages of a VMA) into `buf`, back to back, in
/// as few syscalls as the iovec limit allows. `buf.len()` must equal the sum of the ranges.
pub fn read_ranges(pid: Pid, ranges: &[RemoteRange], buf: &mut [u8]) -> Result<(), VmError> {
    transfer(pid, Dir::Read, buf.as_mut_ptr(), buf.len(), ranges, false).map(drop)
}

/// Writes all of `data` at `addr` of `pid`; the target pages must be writable.
pub fn write_all(pid: Pid, addr: u64, data: &[u8]) -> Result<(), VmError> {
    let r = [RemoteRange {
        addr,
        len: data.len(),
    }];
    // The kernel only reads from the local buffer on a write.
    transfer(
        pid,
        Dir::Write,
        data.as_ptr() as *mut u8,
        data.len(),
        &r,
        false,
    )
    .map(drop)
}

/// Scatters `data` over remote ranges (inverse of [`read_ranges`]).
pub fn write_ranges(pid: Pid, ranges: &[RemoteRange], data: &[u8]) -> Result<(), VmError> {
    transfer(
        pid,
        Dir::Write,
        data.as_ptr() as *mut u8,
        data.len(),
        ranges,
        false,
    )
    .map(drop)
}

/// `/proc/PID/mem` opened once; offsets are virtual addresses. Needs ptrace access to the
/// target; ignores page protections (like a debugger).
#[derive(Debug)]
pub struct ProcMem {
    file: File,
    path: String,
}

impl ProcMem {
    /// Opens `/proc/PID/mem` read-only, or read-write when `write`.
    pub fn open(pid: Pid, write: bool) -> Result<ProcMem, VmError> {
        let path = format!("/proc/{pid}/mem");
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .map_err(|source| VmError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(ProcMem { file, path })
    }

    /// Reads exactly `buf.len()` bytes at `addr`.
    pub fn read_exact(&self, addr: u64, buf: &mut [u8]) -> Result<(), VmError> {
        self.file
            .read_exact_at(buf, addr)
            .map_err(|source| VmError::Io {
                call: "pread",
                path: self.path.clone(),
                addr,
                len: buf.len(),
                source,
            })
    }

    /// Writes all of `data` at `addr`.
    pub fn write_all(&self, addr: u64, data: &[u8]) -> Result<(), VmError> {
        self.file
            .write_all_at(data, addr)
            .map_err(|source| VmError::Io {
                call: "pwrite",
                path: self.path.clone(),
                addr,
                len: data.len(),
                source,
            })
    }
}

#[cfg(test)]
mod tests;
