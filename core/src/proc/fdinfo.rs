//! `/proc/PID/fdinfo/FD`: the common header (pos, flags, mnt_id, ino) plus every other line
//! kept as text for the fd-kind plugins.

use super::{ParseError, ProcError, num, read_parsed};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// Open flags (octal in the file), including O_CLOEXEC as the kernel reports it.
    pub flags: u32,
    pub mnt_id: Option<i32>,
    pub ino: Option<u64>,
    /// All other lines, in order, split at the first ':' (value trimmed). Lines without ':'
    /// (e.g. continuation lines of some kinds) keep an empty key.
    pub extra: Vec<(String, String)>,
}

impl FdInfo {
    /// First value of an extra key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ParseError> {
    let mut fi = FdInfo::default();
    let (mut seen_pos, mut seen_flags) = (false, false);
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        let Some((k, v)) = l.split_once(':') else {
            if !l.trim().is_empty() {
                fi.extra.push((String::new(), l.trim().to_string()));
            }
            continue;
        };
        let v = v.trim();
        match k {
            "pos" if !seen_pos => {
                fi.pos = num(v, line, "pos")?;
                seen_pos = true;
            }
            "flags" if !seen_flags => {
                fi.flags = u32::from_str_radix(v, 8)
                    .map_err(|_| ParseError::new(line, format!("bad flags {v:?}")))?;
                seen_flags = true;
            }
            "mnt_id" if fi.mnt_id.is_none() => fi.mnt_id = Some(num(v, line, "mnt_id")?),
            "ino" if fi.ino.is_none() => fi.ino = Some(num(v, line, "ino")?),
            _ => fi.extra.push((k.trim().to_string(), v.to_string())),
        }
    }
    if !seen_pos || !seen_flags {
        return Err(ParseError::new(0, "pos or flags line missing"));
    }
    Ok(fi)
}

pub fn read_fdinfo(pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    read_parsed(super::pid_path(pid, &format!("fdinfo/{fd}")), parse_fdinfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular() {
        let f = parse_fdinfo("pos:\t5\nflags:\t0100002\nmnt_id:\t24\nino:\t3\n").unwrap();
        assert_eq!(f.pos, 5);
        assert_eq!(f.flags, 0o100002);
        assert_eq!(f.mnt_id, Some(24));
        assert_eq!(f.ino, Some(3));
        assert!(f.extra.is_empty());
    }

    #[test]
    fn eventfd_and_pidfd_extras() {
        let t = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\neventfd-count:                0\neventfd-id: 3\n";
        let f = parse_fdinfo(t).unwrap();
        assert_eq!(f.get("eventfd-count"), Some("0"));
        assert_eq!(f.get("eventfd-id"), Some("3"));
        let p =
            parse_fdinfo("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1\nPid:\t42\nNSpid:\t42\n")
                .unwrap();
        assert_eq!(p.get("Pid"), Some("42"));
    }

    #[test]
    fn bad() {
        assert!(parse_fdinfo("").is_err());
        assert!(parse_fdinfo("pos:\tx\nflags:\t0\n").is_err());
        assert!(parse_fdinfo("pos:\t0\nflags:\t9\n").is_err());
    }

    #[test]
    fn own_stdin() {
        let me = std::process::id() as i32;
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let fi = read_fdinfo(me, f.as_raw_fd()).unwrap();
        assert_eq!(fi.pos, 0);
        assert_eq!(fi.flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
        assert!(fi.mnt_id.is_some());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,200}") {
            let _ = parse_fdinfo(&s);
        }
    }
}
