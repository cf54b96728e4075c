//! A cwd, root, exe or mapping under `/proc/PID` of a process that has died: the kernel
//! shows it as `/proc/PID (deleted)` (an unhashed procfs entry) and refuses to open it
//! again (ESRCH). CRIU brings such a file back by forking a helper process with that pid
//! for the time of the restore (remap type PROCFS); criu-rs does not, and says so.

use super::DumpError;

/// The dead process's pid when `link` (a `/proc/PID/cwd`-style link) names its `/proc`
/// directory or something below it: `/proc/PID (deleted)`, or `/proc/PID/...` while
/// `/proc/PID` no longer exists.
pub fn dead_proc_pid(link: &str, exists: impl Fn(&str) -> bool) -> Option<i32> {
    let rest = link.strip_prefix("/proc/")?;
    let (digits, tail) = match rest.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let pid: i32 = digits.parse().ok()?;
    let dead = tail == " (deleted)" || (tail.starts_with('/') && !exists(&format!("/proc/{pid}")));
    dead.then_some(pid)
}

/// The refusal for task `pid`'s `what` (cwd, root...) at `link`, when that is under a
/// dead process's `/proc` directory.
pub fn refusal(pid: i32, what: &str, link: &str) -> Option<DumpError> {
    let dead = dead_proc_pid(link, |p| std::path::Path::new(p).exists())?;
    Some(DumpError::Unsupported {
        pid,
        step: "files",
        what: format!(
            "{what} {link:?}, the /proc directory of process {dead}, which has died (an \
             unhashed procfs entry)"
        ),
        hint: "CRIU recreates it with a helper process of that pid during the restore; \
               criu-rs does not yet: chdir (or close the file) elsewhere before the dump",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_proc_dirs_are_recognised() {
        let none = |_: &str| false;
        let all = |_: &str| true;
        assert_eq!(dead_proc_pid("/proc/67 (deleted)", all), Some(67));
        assert_eq!(dead_proc_pid("/proc/67/task", none), Some(67));
        assert_eq!(dead_proc_pid("/proc/67/task", all), None);
        assert_eq!(dead_proc_pid("/proc/67", all), None);
        assert_eq!(dead_proc_pid("/proc/self (deleted)", none), None);
        assert_eq!(dead_proc_pid("/tmp/proc/67 (deleted)", none), None);
        assert_eq!(dead_proc_pid("/proc/sys/kernel", none), None);
    }
}
