//! `/proc/PID/status` (and `/proc/PID/task/TID/status`).

use super::{ParseError, ProcError, hex_u64, key_values, num, pid_path, read_parsed, tid_path};

/// The fields of status the dump needs. Optional lines (absent on some kernels) are `Option`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub name: String,
    pub umask: Option<u32>,
    /// The state letter (`R`, `S`, `T`, `t`, `Z`...).
    pub state: char,
    pub tgid: i32,
    pub pid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// real, effective, saved, fs.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    /// Pids in nested pid namespaces, outermost first.
    pub ns_pid: Vec<i32>,
    pub threads: u32,
    /// `SigQ`: queued signals / RLIMIT_SIGPENDING.
    pub sig_q: Option<(u64, u64)>,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: u32,
    pub seccomp: u32,
    pub seccomp_filters: Option<u32>,
}

fn ids4(v: &str, line: usize, what: &str) -> Result<[u32; 4], ParseError> {
    let mut out = [0u32; 4];
    let mut it = v.split_ascii_whitespace();
    for slot in &mut out {
        let t = it
            .next()
            .ok_or_else(|| ParseError::new(line, format!("{what}: 4 values expected")))?;
        *slot = num(t, line, what)?;
    }
    Ok(out)
}

/// Parse the text of a status file.
pub fn parse_status(text: &str) -> Result<ProcStatus, ParseError> {
    let mut s = ProcStatus::default();
    let mut seen_state = false;
    let mut seen_pid = false;
    for (line, k, v) in key_values(text) {
        match k {
            "Name" => s.name = v.to_string(),
            "Umask" => {
                s.umask = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| ParseError::new(line, format!("bad Umask {v:?}")))?,
                )
            }
            "State" => {
                s.state = v
                    .chars()
                    .next()
                    .ok_or_else(|| ParseError::new(line, "empty State"))?;
                seen_state = true;
            }
            "Tgid" => s.tgid = num(v, line, "Tgid")?,
            "Pid" => {
                s.pid = num(v, line, "Pid")?;
                seen_pid = true;
            }
            "PPid" => s.ppid = num(v, line, "PPid")?,
            "TracerPid" => s.tracer_pid = num(v, line, "TracerPid")?,
            "Uid" => s.uid = ids4(v, line, "Uid")?,
            "Gid" => s.gid = ids4(v, line, "Gid")?,
            "Groups" => {
                s.groups = v
                    .split_ascii_whitespace()
                    .map(|g| num(g, line, "group"))
                    .collect::<Result<_, _>>()?
            }
            "NSpid" => {
                s.ns_pid = v
                    .split_ascii_whitespace()
                    .map(|g| num(g, line, "NSpid"))
                    .collect::<Result<_, _>>()?
            }
            "Threads" => s.threads = num(v, line, "Threads")?,
            "SigQ" => {
                let (a, b) = v
                    .split_once('/')
                    .ok_or_else(|| ParseError::new(line, format!("bad SigQ {v:?}")))?;
                s.sig_q = Some((num(a, line, "SigQ")?, num(b, line, "SigQ")?));
            }
            "SigPnd" => s.sig_pnd = hex_u64(v, line, k)?,
            "ShdPnd" => s.shd_pnd = hex_u64(v, line, k)?,
            "SigBlk" => s.sig_blk = hex_u64(v, line, k)?,
            "SigIgn" => s.sig_ign = hex_u64(v, line, k)?,
            "SigCgt" => s.sig_cgt = hex_u64(v, line, k)?,
            "CapInh" => s.cap_inh = hex_u64(v, line, k)?,
            "CapPrm" => s.cap_prm = hex_u64(v, line, k)?,
            "CapEff" => s.cap_eff = hex_u64(v, line, k)?,
            "CapBnd" => s.cap_bnd = hex_u64(v, line, k)?,
            "CapAmb" => s.cap_amb = hex_u64(v, line, k)?,
            "NoNewPrivs" => s.no_new_privs = num(v, line, k)?,
            "Seccomp" => s.seccomp = num(v, line, k)?,
            "Seccomp_filters" => s.seccomp_filters = Some(num(v, line, k)?),
            _ => {}
        }
    }
    if !seen_state || !seen_pid {
        return Err(ParseError::new(0, "State or Pid line missing"));
    }
    Ok(s)
}

pub fn read_status(pid: i32) -> Result<ProcStatus, ProcError> {
    read_parsed(pid_path(pid, "status"), parse_status)
}

pub fn read_thread_status(pid: i32, tid: i32) -> Result<ProcStatus, ProcError> {
    read_parsed(tid_path(pid, tid, "status"), parse_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Name:\tcat
Umask:\t0022
State:\tR (running)
Tgid:\t7265
Ngid:\t0
Pid:\t7265
PPid:\t7263
TracerPid:\t0
Uid:\t0\t1\t2\t3
Gid:\t4\t5\t6\t7
FDSize:\t256
Groups:\t 
NStgid:\t7265
NSpid:\t7265
Threads:\t1
SigQ:\t0/96364
SigPnd:\t0000000000000000
ShdPnd:\t0000000000000100
SigBlk:\t0000000000010000
SigIgn:\t0000000000001000
SigCgt:\t0000000000000200
CapInh:\t0000000000000000
CapPrm:\t000001fffeffffff
CapEff:\t000001fffeffffff
CapBnd:\t000001fffeffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t0
Seccomp:\t0
Seccomp_filters:\t0
Speculation_Store_Bypass:\tthread vulnerable
Cpus_allowed_list:\t0-1
";

    #[test]
    fn sample() {
        let s = parse_status(SAMPLE).unwrap();
        assert_eq!(s.name, "cat");
        assert_eq!(s.umask, Some(0o22));
        assert_eq!(s.state, 'R');
        assert_eq!((s.tgid, s.pid, s.ppid), (7265, 7265, 7263));
        assert_eq!(s.uid, [0, 1, 2, 3]);
        assert_eq!(s.gid, [4, 5, 6, 7]);
        assert!(s.groups.is_empty());
        assert_eq!(s.shd_pnd, 0x100);
        assert_eq!(s.sig_blk, 0x10000);
        assert_eq!(s.cap_prm, 0x1fffeffffff);
        assert_eq!(s.seccomp_filters, Some(0));
        assert_eq!(s.sig_q, Some((0, 96364)));
    }

    #[test]
    fn missing_optional_and_groups() {
        let t = "Name:\tx y\nState:\tS (sleeping)\nPid:\t5\nGroups:\t10 20 30\n";
        let s = parse_status(t).unwrap();
        assert_eq!(s.name, "x y");
        assert_eq!(s.umask, None);
        assert_eq!(s.groups, vec![10, 20, 30]);
        assert!(parse_status("Name:\tx\n").is_err());
        assert!(parse_status("State:\tS\nPid:\t1\nUid:\t1 2\n").is_err());
        assert!(parse_status("State:\tS\nPid:\t1\nSigQ:\t1\n").is_err());
    }

    #[test]
    fn own_status() {
        let me = std::process::id() as i32;
        let s = read_status(me).unwrap();
        assert_eq!(s.pid, me);
        assert_eq!(s.tgid, me);
        assert!(s.threads >= 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,300}") {
            let _ = parse_status(&s);
        }
    }
}
