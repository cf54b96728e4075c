//! `/proc/PID/limits`: the 16 resource limits, in RLIMIT_* order. Reading this file is how
//! the dump gets limits (prlimit on another task needs CAP_SYS_RESOURCE, which we lack).

use super::{ParseError, ProcError, pid_path, read_parsed};

/// RLIM_INFINITY as u64.
pub const INFINITY: u64 = u64::MAX;

/// Row titles in RLIMIT_* order (RLIMIT_CPU = 0 ... RLIMIT_RTTIME = 15).
const NAMES: [&str; 16] = [
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub cur: u64,
    pub max: u64,
}

fn value(s: &str, line: usize) -> Result<u64, ParseError> {
    if s == "unlimited" {
        Ok(INFINITY)
    } else {
        s.parse()
            .map_err(|_| ParseError::new(line, format!("bad limit {s:?}")))
    }
}

/// Parse the limits table; every one of the 16 rows must be present.
pub fn parse_limits(text: &str) -> Result<[Rlimit; 16], ParseError> {
    let mut out = [None; 16];
    for (i, l) in text.lines().enumerate() {
        let Some(idx) = NAMES.iter().position(|n| l.starts_with(n)) else {
            continue;
        };
        let rest = &l[NAMES[idx].len()..];
        let mut it = rest.split_ascii_whitespace();
        let (Some(cur), Some(max)) = (it.next(), it.next()) else {
            return Err(ParseError::new(i + 1, "soft and hard limit expected"));
        };
        out[idx] = Some(Rlimit {
            cur: value(cur, i + 1)?,
            max: value(max, i + 1)?,
        });
    }
    let mut res = [Rlimit { cur: 0, max: 0 }; 16];
    for (i, o) in out.iter().enumerate() {
        res[i] = o.ok_or_else(|| ParseError::new(0, format!("row {:?} missing", NAMES[i])))?;
    }
    Ok(res)
}

pub fn read_limits(pid: i32) -> Result<[Rlimit; 16], ProcError> {
    read_parsed(pid_path(pid, "limits"), parse_limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96364                96364                processes 
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96364                96364                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
";

    #[test]
    fn sample() {
        let l = parse_limits(SAMPLE).unwrap();
        assert_eq!(l[0].cur, INFINITY);
        assert_eq!(
            l[libc::RLIMIT_STACK as usize],
            Rlimit {
                cur: 8388608,
                max: INFINITY
            }
        );
        assert_eq!(
            l[libc::RLIMIT_NOFILE as usize],
            Rlimit {
                cur: 20000,
                max: 20000
            }
        );
        assert_eq!(l[13], Rlimit { cur: 0, max: 0 });
        assert_eq!(l[15].max, INFINITY);
    }

    #[test]
    fn own_limits_match_getrlimit() {
        let l = read_limits(std::process::id() as i32).unwrap();
        let (s, h) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(l[libc::RLIMIT_NOFILE as usize], Rlimit { cur: s, max: h });
    }

    #[test]
    fn bad() {
        assert!(parse_limits("").is_err());
        let t = SAMPLE.replace(
            "Max nice priority         0                    0",
            "Max nice priority x",
        );
        assert!(parse_limits(&t).is_err());
        let t = SAMPLE.replace("Max msgqueue size", "Max msgq");
        assert!(parse_limits(&t).is_err());
    }
}
