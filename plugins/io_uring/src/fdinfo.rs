//! The fields of an io_uring fd's `/proc/PID/fdinfo/N` the plugin uses (the kernel's
//! `io_uring/fdinfo.c`): counters, the SQ thread, registered resources, pending polls and
//! overflowed completions.

/// What fdinfo says about one ring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingInfo {
    /// `SqMask` + 1.
    pub sq_entries: u32,
    /// `CqMask` + 1.
    pub cq_entries: u32,
    /// `SqHead`: the head the kernel published in the ring.
    pub sq_head: u32,
    /// `SqTail`: the tail the program published.
    pub sq_tail: u32,
    /// `CachedSqHead`: SQEs the kernel consumed.
    pub cached_sq_head: u32,
    /// `CqHead`.
    pub cq_head: u32,
    /// `CqTail`.
    pub cq_tail: u32,
    /// `CachedCqTail`: CQEs the kernel posted.
    pub cached_cq_tail: u32,
    /// `SqThread`: tid of the SQPOLL thread (`None`: no SQPOLL thread).
    pub sq_thread: Option<i32>,
    /// `UserFiles`: slots of the registered file table.
    pub user_files: u32,
    /// The occupied file slots (the kernel lists no empty one): slot and the file's path as
    /// `/proc/PID/fd/N` links show it.
    pub files: Vec<(u32, String)>,
    /// `UserBufs`: slots of the registered buffer table.
    pub user_bufs: u32,
    /// The occupied buffer slots (`<none>` lines are empty ones): slot, address, length.
    pub bufs: Vec<(u32, u64, u64)>,
    /// Whether a `Personalities:` section lists registered credentials.
    pub personalities: bool,
    /// The opcodes of the `PollList` (requests waiting on a poll, in flight).
    pub poll_ops: Vec<u8>,
    /// Entries of `CqOverflowList` (posted CQEs waiting for room in the CQ ring).
    pub overflowed: u32,
}

/// Why an fdinfo text is not an io_uring's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn num(v: &str) -> Option<u64> {
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Parses fdinfo text; `SqMask`, `SqHead`, `SqTail`, `CachedSqHead`, `CqMask`, `CqHead`,
/// `CqTail` and `CachedCqTail` must be there.
pub fn parse(text: &str) -> Result<RingInfo, ParseError> {
    let mut info = RingInfo::default();
    let mut seen = 0u32;
    let mut section = "";
    for line in text.lines() {
        let (key, val) = match line.split_once(':') {
            Some((k, v)) if !k.starts_with(' ') && !k.starts_with('\t') => (k, v),
            _ => {
                let l = line.trim();
                if section == "PollList" {
                    if let Some(op) = l.strip_prefix("op=") {
                        let op = op.split(',').next().unwrap_or("");
                        let op = op
                            .trim()
                            .parse()
                            .map_err(|_| ParseError(format!("bad PollList line {l:?}")))?;
                        info.poll_ops.push(op);
                    }
                } else if section == "CqOverflowList" && !l.is_empty() {
                    info.overflowed += 1;
                } else if section == "UserFiles" || section == "UserBufs" {
                    slot_line(&mut info, section, l)?;
                }
                continue;
            }
        };
        section = key;
        let n = || num(val).ok_or_else(|| ParseError(format!("bad {key} value {:?}", val.trim())));
        let u =
            || n().and_then(|v| u32::try_from(v).map_err(|_| ParseError(format!("{key} too big"))));
        let mut field = |bit: u32, slot: &mut u32, v: u32| {
            seen |= bit;
            *slot = v;
        };
        match key {
            "SqMask" => field(1, &mut info.sq_entries, u()?.wrapping_add(1)),
            "SqHead" => field(2, &mut info.sq_head, u()?),
            "SqTail" => field(4, &mut info.sq_tail, u()?),
            "CachedSqHead" => field(8, &mut info.cached_sq_head, u()?),
            "CqMask" => field(16, &mut info.cq_entries, u()?.wrapping_add(1)),
            "CqHead" => field(32, &mut info.cq_head, u()?),
            "CqTail" => field(64, &mut info.cq_tail, u()?),
            "CachedCqTail" => field(128, &mut info.cached_cq_tail, u()?),
            "SqThread" => {
                let t: i64 = val
                    .trim()
                    .parse()
                    .map_err(|_| ParseError(format!("bad SqThread {val:?}")))?;
                info.sq_thread = (t > 0).then_some(t as i32);
            }
            "UserFiles" => info.user_files = u()?,
            "UserBufs" => info.user_bufs = u()?,
            "Personalities" => info.personalities = true,
            _ => {}
        }
    }
    if seen != 0xff {
        return Err(ParseError(
            "not an io_uring fdinfo (ring counters missing)".into(),
        ));
    }
    Ok(info)
}

/// One `    N: what` line under `UserFiles:` or `UserBufs:`.
fn slot_line(info: &mut RingInfo, section: &str, l: &str) -> Result<(), ParseError> {
    let bad = || ParseError(format!("bad {section} line {l:?}"));
    let (n, what) = l.split_once(": ").ok_or_else(bad)?;
    let slot: u32 = n.trim().parse().map_err(|_| bad())?;
    if what == "<none>" {
        return Ok(());
    }
    if section == "UserFiles" {
        info.files.push((slot, unescape(what)));
        return Ok(());
    }
    let (addr, len) = what.split_once('/').ok_or_else(bad)?;
    let addr = num(addr).ok_or_else(bad)?;
    let len = len.trim().parse().map_err(|_| bad())?;
    info.bufs.push((slot, addr, len));
    Ok(())
}

/// A path as `seq_file_path` prints it: blanks, newlines and backslashes as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |a, c| a.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RingInfo {
    /// Requests submitted and not completed as far as the counters tell: SQEs consumed
    /// minus CQEs posted (in the ring or overflowed). Negative when requests posted more
    /// CQEs than SQEs (multishot), positive also for requests that never post a CQE on
    /// success (`IOSQE_CQE_SKIP_SUCCESS`), which the counters cannot tell from in-flight.
    pub fn unanswered(&self, sq_dropped: u32) -> i64 {
        let consumed = self.cached_sq_head.wrapping_sub(sq_dropped);
        let posted = self.cached_cq_tail.wrapping_add(self.overflowed);
        i64::from(consumed.wrapping_sub(posted) as i32)
    }

    /// Whether the kernel still has work of the ring: published SQEs an SQ thread has not
    /// taken yet, requests waiting on a poll, or unanswered requests.
    pub fn busy(&self, sq_dropped: u32) -> bool {
        (self.sq_thread.is_some() && self.sq_head != self.sq_tail)
            || !self.poll_ops.is_empty()
            || self.unanswered(sq_dropped) > 0
    }
}

/// The name of an `IORING_OP_*` opcode, for messages.
pub fn op_name(op: u8) -> String {
    const NAMES: &[&str] = &[
        "NOP",
        "READV",
        "WRITEV",
        "FSYNC",
        "READ_FIXED",
        "WRITE_FIXED",
        "POLL_ADD",
        "POLL_REMOVE",
        "SYNC_FILE_RANGE",
        "SENDMSG",
        "RECVMSG",
        "TIMEOUT",
        "TIMEOUT_REMOVE",
        "ACCEPT",
        "ASYNC_CANCEL",
        "LINK_TIMEOUT",
        "CONNECT",
        "FALLOCATE",
        "OPENAT",
        "CLOSE",
        "FILES_UPDATE",
        "STATX",
        "READ",
        "WRITE",
        "FADVISE",
        "MADVISE",
        "SEND",
        "RECV",
        "OPENAT2",
        "EPOLL_CTL",
        "SPLICE",
        "PROVIDE_BUFFERS",
        "REMOVE_BUFFERS",
        "TEE",
        "SHUTDOWN",
        "RENAMEAT",
        "UNLINKAT",
        "MKDIRAT",
        "SYMLINKAT",
        "LINKAT",
        "MSG_RING",
    ];
    match NAMES.get(usize::from(op)) {
        Some(n) => format!("IORING_OP_{n}"),
        None => format!("opcode {op}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t2238168\nSqMask:\t0x7\n\
SqHead:\t1\nSqTail:\t1\nCachedSqHead:\t1\nCqMask:\t0xf\nCqHead:\t0\nCqTail:\t0\n\
CachedCqTail:\t0\nSQEs:\t0\nCQEs:\t0\nSqThread:\t-1\nSqThreadCpu:\t-1\nSqTotalTime:\t0\n\
SqWorkTime:\t0\nUserFiles:\t2\n    0: data\n    1: <none>\nUserBufs:\t1\n    0: 0x7f00/4096\n\
PollList:\n  op=22, task_works=0\nCqOverflowList:\nNAPI:\tdisabled\n";

    #[test]
    fn parses_the_kernels_text() {
        let i = parse(SAMPLE).unwrap();
        assert_eq!((i.sq_entries, i.cq_entries), (8, 16));
        assert_eq!((i.sq_head, i.sq_tail, i.cached_sq_head), (1, 1, 1));
        assert_eq!(i.sq_thread, None);
        assert_eq!((i.user_files, i.user_bufs), (2, 1));
        assert_eq!(i.files, [(0, "data".to_string())]);
        assert_eq!(i.bufs, [(0, 0x7f00, 4096)]);
        assert_eq!(i.poll_ops, [22]);
        assert_eq!(i.overflowed, 0);
        assert_eq!(i.unanswered(0), 1);
        assert!(i.busy(0));
        assert_eq!(op_name(22), "IORING_OP_READ");
    }

    #[test]
    fn counts_overflow_and_wraps() {
        let text = SAMPLE
            .replace("CachedSqHead:\t1", "CachedSqHead:\t2")
            .replace("CachedCqTail:\t0", "CachedCqTail:\t4294967295")
            .replace("PollList:\n  op=22, task_works=0\n", "PollList:\n")
            .replace(
                "CqOverflowList:\n",
                "CqOverflowList:\n  user_data=1, res=0, flags=0\n  user_data=2, res=0, flags=0\n",
            );
        let i = parse(&text).unwrap();
        assert_eq!(i.overflowed, 2);
        assert_eq!(i.unanswered(0), 1);
        assert!(i.busy(0));
        assert!(!i.busy(1));
    }

    #[test]
    fn reads_sparse_tables_and_escaped_paths() {
        let text = SAMPLE
            .replace(
                "UserFiles:\t2\n    0: data\n    1: <none>\n",
                "UserFiles:\t9\n    2: /tmp/a\\040b\n    8: pipe:[77]\n",
            )
            .replace(
                "UserBufs:\t1\n    0: 0x7f00/4096\n",
                "UserBufs:\t3\n    0: 0x10/5\n    1: <none>\n    2: 0x2000/100\n",
            );
        let i = parse(&text).unwrap();
        assert_eq!(i.user_files, 9);
        assert_eq!(
            i.files,
            [(2, "/tmp/a b".to_string()), (8, "pipe:[77]".to_string())]
        );
        assert_eq!(
            (i.user_bufs, i.bufs),
            (3, vec![(0, 0x10, 5), (2, 0x2000, 100)])
        );
        assert!(parse(&SAMPLE.replace("0: 0x7f00/4096", "0: 0x7f00")).is_err());
    }

    #[test]
    fn refuses_other_fdinfo() {
        assert!(parse("pos:\t0\nflags:\t02\n").is_err());
        assert!(parse(&SAMPLE.replace("SqHead:\t1", "SqHead:\tx")).is_err());
    }
}
