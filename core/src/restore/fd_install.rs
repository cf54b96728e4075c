//! The syscall sequence that puts one of criu's open files at a given fd number inside a
//! stopped task: the task opens a pidfd of criu, takes the file with `pidfd_getfd`, moves it
//! to the number with `dup3` and closes its temporaries. Kept apart from the ptrace plumbing
//! so the fd-number logic can be checked against a simulated fd table.

use criu_plugin_api::PluginError;

/// Runs one syscall in the task: `(nr, args, what)` → the raw result, or an error naming
/// `what` (the caller turns negative errnos into errors).
pub(crate) type TaskCall<'a> = dyn FnMut(i64, [u64; 6], &str) -> Result<u64, PluginError> + 'a;

/// Installs criu's fd `our_fd` (criu's pid is `criu_pid`) at `target` in the task behind
/// `call`, with `FD_CLOEXEC` as asked. Whatever happens, the temporaries are closed.
pub(crate) fn install_via_pidfd(
    call: &mut TaskCall<'_>,
    criu_pid: u64,
    our_fd: i32,
    target: i32,
    cloexec: bool,
) -> Result<(), PluginError> {
    let target = target as u64;
    let mut pidfd = call(
        libc::SYS_pidfd_open,
        [criu_pid, 0, 0, 0, 0, 0],
        "pidfd_open",
    )?;
    if pidfd == target {
        // The target number was the lowest free one: move the pidfd above it, or the dup3
        // below would replace it and closing the pidfd would then close the installed fd.
        let dupfd = libc::F_DUPFD_CLOEXEC as u64;
        let moved = call(
            libc::SYS_fcntl,
            [pidfd, dupfd, target + 1, 0, 0, 0],
            "fcntl(F_DUPFD_CLOEXEC)",
        );
        let _ = call(libc::SYS_close, [pidfd, 0, 0, 0, 0, 0], "close");
        pidfd = moved?;
    }
    let got = call(
        libc::SYS_pidfd_getfd,
        [pidfd, our_fd as u64, 0, 0, 0, 0],
        "pidfd_getfd",
    );
    let placed = got.and_then(|tmp| {
        if tmp == target {
            // Already there (the number was free and the lowest): only the flag.
            let fl = if cloexec { libc::FD_CLOEXEC as u64 } else { 0 };
            call(
                libc::SYS_fcntl,
                [tmp, libc::F_SETFD as u64, fl, 0, 0, 0],
                "fcntl(F_SETFD)",
            )
        } else {
            let flags = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            let r = call(libc::SYS_dup3, [tmp, target, flags, 0, 0, 0], "dup3");
            let _ = call(libc::SYS_close, [tmp, 0, 0, 0, 0, 0], "close");
            r
        }
        .map(|_| ())
    });
    let _ = call(libc::SYS_close, [pidfd, 0, 0, 0, 0, 0], "close");
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// What an fd number of the simulated task refers to.
    #[derive(Clone, Debug, PartialEq)]
    enum Obj {
        Own(&'static str),
        PidfdOfCriu,
        CriuFile(u64),
    }

    /// A task's fd table with the kernel's lowest-free-number rule.
    #[derive(Default)]
    struct Table {
        fds: BTreeMap<u64, (Obj, bool)>,
    }

    impl Table {
        fn lowest_free(&self, from: u64) -> u64 {
            (from..).find(|n| !self.fds.contains_key(n)).unwrap()
        }
        fn syscall(&mut self, nr: i64, a: [u64; 6]) -> Result<u64, PluginError> {
            let ebadf = || PluginError::Unsupported {
                resource: format!("syscall {nr}"),
                pid: 0,
                hint: "EBADF".into(),
            };
            match nr {
                libc::SYS_pidfd_open => {
                    let n = self.lowest_free(0);
                    self.fds.insert(n, (Obj::PidfdOfCriu, true));
                    Ok(n)
                }
                libc::SYS_pidfd_getfd => {
                    if self.fds.get(&a[0]).map(|e| &e.0) != Some(&Obj::PidfdOfCriu) {
                        return Err(ebadf());
                    }
                    let n = self.lowest_free(0);
                    self.fds.insert(n, (Obj::CriuFile(a[1]), true));
                    Ok(n)
                }
                libc::SYS_dup3 => {
                    let obj = self.fds.get(&a[0]).ok_or_else(ebadf)?.0.clone();
                    self.fds.insert(a[1], (obj, a[2] != 0));
                    Ok(a[1])
                }
                libc::SYS_close => self.fds.remove(&a[0]).map(|_| 0).ok_or_else(ebadf),
                libc::SYS_fcntl if a[1] == libc::F_DUPFD_CLOEXEC as u64 => {
                    let obj = self.fds.get(&a[0]).ok_or_else(ebadf)?.0.clone();
                    let n = self.lowest_free(a[2]);
                    self.fds.insert(n, (obj, true));
                    Ok(n)
                }
                libc::SYS_fcntl if a[1] == libc::F_SETFD as u64 => {
                    let e = self.fds.get_mut(&a[0]).ok_or_else(ebadf)?;
                    e.1 = a[2] != 0;
                    Ok(0)
                }
                _ => panic!("unexpected syscall {nr}"),
            }
        }
    }

    fn run(table: &mut Table, target: i32, cloexec: bool) -> Result<(), PluginError> {
        let mut call = |nr: i64, a: [u64; 6], _what: &str| table.syscall(nr, a);
        install_via_pidfd(&mut call, 1234, 7, target, cloexec)
    }

    fn with_fds(held: &[u64]) -> Table {
        let mut t = Table::default();
        for &n in held {
            t.fds.insert(n, (Obj::Own("task's"), false));
        }
        t
    }

    #[test]
    fn target_that_is_the_lowest_free_number_keeps_the_file() {
        // The case that once lost the fd: pidfd_open lands on the target itself.
        let mut t = with_fds(&[0, 1, 2]);
        run(&mut t, 3, false).unwrap();
        assert_eq!(t.fds.get(&3), Some(&(Obj::CriuFile(7), false)));
        assert_eq!(t.fds.len(), 4, "temporaries left: {:?}", t.fds);
    }

    #[test]
    fn target_above_a_hole_leaves_the_hole_free() {
        let mut t = with_fds(&[0, 2]);
        run(&mut t, 5, true).unwrap();
        assert_eq!(t.fds.get(&5), Some(&(Obj::CriuFile(7), true)));
        assert!(!t.fds.contains_key(&1), "temporary left at 1: {:?}", t.fds);
        assert_eq!(t.fds.len(), 3);
    }

    #[test]
    fn target_reached_by_getfd_only_gets_its_flag() {
        // pidfd takes 0, the file lands on 1 = target.
        let mut t = with_fds(&[]);
        run(&mut t, 1, true).unwrap();
        assert_eq!(t.fds.get(&1), Some(&(Obj::CriuFile(7), true)));
        assert_eq!(t.fds.len(), 1, "temporaries left: {:?}", t.fds);
    }

    #[test]
    fn an_occupied_target_is_replaced() {
        let mut t = with_fds(&[0, 1, 2, 3]);
        run(&mut t, 2, false).unwrap();
        assert_eq!(t.fds.get(&2), Some(&(Obj::CriuFile(7), false)));
        assert_eq!(t.fds.len(), 4, "temporaries left: {:?}", t.fds);
    }

    #[test]
    fn a_failed_getfd_closes_the_pidfd() {
        let mut t = with_fds(&[0, 1, 2]);
        let mut call = |nr: i64, a: [u64; 6], _w: &str| {
            if nr == libc::SYS_pidfd_getfd {
                return Err(PluginError::Unsupported {
                    resource: "pidfd_getfd".into(),
                    pid: 0,
                    hint: "refused".into(),
                });
            }
            t.syscall(nr, a)
        };
        assert!(install_via_pidfd(&mut call, 1, 7, 3, false).is_err());
        assert_eq!(t.fds.len(), 3, "temporaries left: {:?}", t.fds);
    }
}
