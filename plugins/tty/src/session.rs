//! Sessions and controlling terminals as `/proc` shows them.
//!
//! CRIU asks `TIOCGSID`/`TIOCGPGRP` inside the dumped task (through its parasite): the
//! kernel answers them only for the caller's own controlling terminal. The same facts are in
//! the task's `/proc/PID/stat` (`session`, `tty_nr`, `tpgid`), readable from criu.

use criu_plugin_api::PluginError;

/// The session fields of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskTty {
    /// `pgrp`: the task's process group.
    pub pgrp: i32,
    /// `session`: the task's session id.
    pub sid: i32,
    /// `tty_nr`: its controlling terminal, kernel-encoded (0: none).
    pub tty_nr: u64,
    /// `tpgid`: the foreground process group of that terminal (-1: none).
    pub tpgid: i32,
}

/// Parses the text of `/proc/PID/stat` (the command name may hold spaces and parentheses:
/// everything up to the last `)` is skipped).
pub(crate) fn parse_stat(text: &str) -> Option<TaskTty> {
    let (_, rest) = text.rsplit_once(')')?;
    // state ppid pgrp session tty_nr tpgid
    let f: Vec<&str> = rest.split_whitespace().take(6).collect();
    if f.len() < 6 {
        return None;
    }
    Some(TaskTty {
        pgrp: f[2].parse().ok()?,
        sid: f[3].parse().ok()?,
        tty_nr: f[4].parse::<i64>().ok()? as u64,
        tpgid: f[5].parse().ok()?,
    })
}

/// [`parse_stat`] of task `pid`.
pub(crate) fn task_tty(pid: i32) -> Result<TaskTty, PluginError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "read",
        source: e,
    })?;
    parse_stat(&text).ok_or_else(|| PluginError::Unsupported {
        resource: path,
        pid,
        hint: "unexpected /proc/PID/stat format".into(),
    })
}

/// `TracerPid:` of a `/proc/PID/status` text.
pub(crate) fn parse_tracer(status: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether task `pid` belongs to the tree this criu is dumping: every such task is traced
/// (seized) by a thread of this process for the whole dump, nothing else is.
pub(crate) fn in_dumped_tree(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    match parse_tracer(&status) {
        Some(t) if t > 0 => std::path::Path::new(&format!("/proc/self/task/{t}")).exists(),
        _ => false,
    }
}
