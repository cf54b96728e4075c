//! `/proc/PID/stat` (and the per-thread one). The comm field may hold spaces and parentheses;
//! it ends at the LAST `)` of the line.

use super::{ParseError, ProcError, pid_path, read_parsed, tid_path};

/// The fields of stat the dump needs (field numbers as in proc(5)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
    pub flags: u32,
    pub priority: i64,
    pub nice: i64,
    pub num_threads: i64,
    pub start_time: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub exit_signal: i32,
    pub rt_priority: u32,
    pub policy: u32,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: i32,
}

/// Parse the text of a stat file.
pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    let text = text.trim_end();
    let open = text
        .find(" (")
        .ok_or_else(|| ParseError::new(1, "no '(' after pid"))?;
    let close = text
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| ParseError::new(1, "no ')' after comm"))?;
    let pid = super::num(&text[..open], 1, "pid")?;
    let comm = text[open + 2..close].to_string();
    // Fields from 3 (state) on.
    let f: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // CRIU needs 52 fields (up to exit_code); older kernels print fewer.
    if f.len() < 50 {
        return Err(ParseError::new(
            1,
            format!("{} fields after comm, 50 needed", f.len()),
        ));
    }
    // proc(5) numbering: field n is f[n - 3].
    let n = |i: usize| f[i - 3];
    fn p<T: std::str::FromStr>(s: &str, i: usize) -> Result<T, ParseError> {
        s.parse::<T>()
            .map_err(|_| ParseError::new(1, format!("bad stat field {i}: {s:?}")))
    }
    Ok(ProcStat {
        pid,
        comm,
        state: n(3).chars().next().unwrap_or('?'),
        ppid: p(n(4), 4)?,
        pgrp: p(n(5), 5)?,
        session: p(n(6), 6)?,
        tty_nr: p(n(7), 7)?,
        flags: p(n(9), 9)?,
        priority: p(n(18), 18)?,
        nice: p(n(19), 19)?,
        num_threads: p(n(20), 20)?,
        start_time: p(n(22), 22)?,
        start_code: p(n(26), 26)?,
        end_code: p(n(27), 27)?,
        start_stack: p(n(28), 28)?,
        exit_signal: p(n(38), 38)?,
        rt_priority: p(n(40), 40)?,
        policy: p(n(41), 41)?,
        start_data: p(n(45), 45)?,
        end_data: p(n(46), 46)?,
        start_brk: p(n(47), 47)?,
        arg_start: p(n(48), 48)?,
        arg_end: p(n(49), 49)?,
        env_start: p(n(50), 50)?,
        env_end: p(n(51), 51)?,
        exit_code: p(n(52), 52)?,
    })
}

pub fn read_stat(pid: i32) -> Result<ProcStat, ProcError> {
    read_parsed(pid_path(pid, "stat"), parse_stat)
}

pub fn read_thread_stat(pid: i32, tid: i32) -> Result<ProcStat, ProcError> {
    read_parsed(tid_path(pid, tid, "stat"), parse_stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "7266 (cat) R 7263 7263 4586 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 35834 3133440 412 18446744073709551615 94307839004672 94307839024553 140723373348368 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94307839040560 94307839042176 94308166516736 140723373349603 140723373349623 140723373349623 140723373350891 0\n";

    #[test]
    fn sample() {
        let s = parse_stat(SAMPLE).unwrap();
        assert_eq!(s.pid, 7266);
        assert_eq!(s.comm, "cat");
        assert_eq!(s.state, 'R');
        assert_eq!((s.ppid, s.pgrp, s.session), (7263, 7263, 4586));
        assert_eq!(s.flags, 4194304);
        assert_eq!(s.priority, 20);
        assert_eq!(s.start_code, 94307839004672);
        assert_eq!(s.end_code, 94307839024553);
        assert_eq!(s.start_stack, 140723373348368);
        assert_eq!(s.exit_signal, 17);
        assert_eq!(s.start_data, 94307839040560);
        assert_eq!(s.start_brk, 94308166516736);
        assert_eq!(s.env_end, 140723373350891);
        assert_eq!(s.exit_code, 0);
    }

    #[test]
    fn odd_comm() {
        let t = SAMPLE.replacen("(cat)", "(a) (b ) c)", 1);
        let s = parse_stat(&t).unwrap();
        assert_eq!(s.comm, "a) (b ) c");
        assert_eq!(s.ppid, 7263);
        let t = SAMPLE.replacen("(cat)", "()", 1);
        assert_eq!(parse_stat(&t).unwrap().comm, "");
    }

    #[test]
    fn bad() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("1 (x R 1 2 3").is_err());
        assert!(parse_stat("1 (x) R 1 2 3").is_err());
        let t = SAMPLE.replacen("7263 7263", "x 7263", 1);
        assert!(parse_stat(&t).is_err());
    }

    #[test]
    fn own_stat() {
        let me = std::process::id() as i32;
        let s = read_stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.start_code < s.end_code);
        assert!(s.arg_start <= s.arg_end);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,400}") {
            let _ = parse_stat(&s);
        }
        #[test]
        fn any_comm(comm in "[ -~]{0,16}") {
            let t = SAMPLE.replacen("(cat)", &format!("({comm})"), 1);
            let s = parse_stat(&t).unwrap();
            proptest::prop_assert_eq!(s.comm, comm);
            proptest::prop_assert_eq!(s.ppid, 7263);
        }
    }
}
