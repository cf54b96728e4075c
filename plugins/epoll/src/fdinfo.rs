//! The registrations an epoll's `/proc/PID/fdinfo/N` lists, one line each (fs/eventpoll.c
//! `ep_show_fdinfo`):
//! `tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x`
//! (`pos:`, `ino:` and `sdev:` since Linux 3.16; older kernels end after `data:`).

/// One registered target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registration {
    /// The fd number the target was added under (in the task that added it).
    pub tfd: i32,
    /// The event mask (`EPOLLIN`..., `EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE`; the kernel
    /// adds `EPOLLERR | EPOLLHUP`).
    pub events: u32,
    /// The user data (`epoll_data_t`).
    pub data: u64,
    /// The target's file offset, inode number and superblock device, when printed.
    pub pos: Option<u64>,
    /// See [`Registration::pos`].
    pub ino: Option<u64>,
    /// See [`Registration::pos`].
    pub sdev: Option<u32>,
    /// Which registration of the same `tfd` this is (0 for the first in fdinfo order): the
    /// `toff` of `kcmp(KCMP_EPOLL_TFD)`.
    pub toff: u32,
}

/// What is wrong with a `tfd:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the epoll fdinfo: {why}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What did not parse.
    pub why: &'static str,
    /// The line.
    pub text: String,
}

fn key_value<'a>(tokens: &mut impl Iterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    let t = tokens.next()?;
    if t == key {
        tokens.next()
    } else {
        t.strip_prefix(key)
    }
}

fn parse_line(text: &str) -> Result<Registration, &'static str> {
    let mut t = text.split_whitespace();
    let tfd = key_value(&mut t, "tfd:").ok_or("no tfd")?;
    let tfd: i32 = tfd.parse().map_err(|_| "tfd is not a number")?;
    if tfd < 0 {
        return Err("negative tfd");
    }
    let events = key_value(&mut t, "events:").ok_or("no events")?;
    let events = u32::from_str_radix(events, 16).map_err(|_| "events is not hex")?;
    let data = key_value(&mut t, "data:").ok_or("no data")?;
    let data = u64::from_str_radix(data, 16).map_err(|_| "data is not hex")?;
    let mut r = Registration {
        tfd,
        events,
        data,
        ..Registration::default()
    };
    let Some(pos) = key_value(&mut t, "pos:") else {
        return Ok(r);
    };
    let pos: i64 = pos.parse().map_err(|_| "pos is not a number")?;
    let ino = key_value(&mut t, "ino:").ok_or("pos without ino")?;
    let ino = u64::from_str_radix(ino, 16).map_err(|_| "ino is not hex")?;
    let sdev = key_value(&mut t, "sdev:").ok_or("pos without sdev")?;
    let sdev = u32::from_str_radix(sdev, 16).map_err(|_| "sdev is not hex")?;
    r.pos = Some(pos as u64);
    r.ino = Some(ino);
    r.sdev = Some(sdev);
    Ok(r)
}

/// Every `tfd:` line of an epoll fdinfo text, in order, with its `toff`. Other lines (`pos:`,
/// `flags:`, ...) are skipped.
pub fn parse_registrations(raw: &str) -> Result<Vec<Registration>, ParseError> {
    let mut out: Vec<Registration> = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        if !line.trim_start().starts_with("tfd:") {
            continue;
        }
        let mut r = parse_line(line).map_err(|why| ParseError {
            line: i + 1,
            why,
            text: line.to_string(),
        })?;
        r.toff = out.iter().filter(|o| o.tfd == r.tfd).count() as u32;
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lines_parse() {
        let raw = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\n\
            tfd:        5 events:       19 data: 0000000000001234  pos:0 ino:8a3 sdev:e\n\
            tfd:        7 events: 80000019 data: ffffffffffffffff  pos:12 ino:1 sdev:100001\n\
            tfd:        5 events:        1 data:                0  pos:0 ino:8a4 sdev:e\n";
        let r = parse_registrations(raw).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            Registration {
                tfd: 5,
                events: 0x19,
                data: 0x1234,
                pos: Some(0),
                ino: Some(0x8a3),
                sdev: Some(0xe),
                toff: 0
            }
        );
        assert_eq!(r[1].events, 0x8000_0019);
        assert_eq!(r[1].data, u64::MAX);
        assert_eq!(r[1].sdev, Some(0x10_0001));
        assert_eq!((r[2].tfd, r[2].toff), (5, 1));
    }

    #[test]
    fn old_kernel_lines_have_no_pos() {
        let r =
            parse_registrations("tfd:        3 events:        1 data:                7\n").unwrap();
        assert_eq!(r[0].data, 7);
        assert_eq!((r[0].pos, r[0].ino, r[0].sdev), (None, None, None));
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        for bad in [
            "tfd: x events: 1 data: 0",
            "tfd: -1 events: 1 data: 0",
            "tfd: 3 events: zz data: 0",
            "tfd: 3 events: 1",
            "tfd: 3 events: 1 data: 0 pos:1",
            "tfd: 3 events: 1 data: 0 pos:1 ino:q sdev:1",
            "tfd: 3 events: 100000000 data: 0",
        ] {
            let e = parse_registrations(&format!("pos: 0\n{bad}\n")).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
        }
        assert!(parse_registrations("").unwrap().is_empty());
    }
}
