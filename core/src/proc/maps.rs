//! `/proc/PID/maps` and `/proc/PID/smaps`: the VMA list, with `VmFlags` from smaps.

use super::{ParseError, ProcError, hex_u64, pid_path, read_parsed};

/// The two-letter `VmFlags` mnemonics of one VMA (as printed by smaps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmFlags(Vec<[u8; 2]>);

impl VmFlags {
    /// Parse the value part of a `VmFlags:` line.
    pub fn parse(s: &str) -> Self {
        Self(
            s.split_ascii_whitespace()
                .filter_map(|t| match t.as_bytes() {
                    [a, b] => Some([*a, *b]),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Whether the mnemonic (e.g. `"gd"`) is present.
    pub fn has(&self, flag: &str) -> bool {
        match flag.as_bytes() {
            [a, b] => self.0.iter().any(|f| f == &[*a, *b]),
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One line of maps (plus VmFlags when read from smaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// 's' (true) or 'p' (false).
    pub shared: bool,
    pub pgoff: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// Path or pseudo-name (`[heap]`, `[vdso]`...); empty for anonymous memory. May end with
    /// " (deleted)".
    pub path: String,
    /// From smaps; `None` when parsed from maps.
    pub vm_flags: Option<VmFlags>,
    /// The page size backing it in bytes (smaps `KernelPageSize`: a huge page size for
    /// hugetlb memory); `None` when parsed from maps.
    pub page_size: Option<u64>,
}

impl MapsEntry {
    /// PROT_* bits.
    pub fn prot(&self) -> u32 {
        let mut p = 0;
        if self.read {
            p |= libc::PROT_READ as u32;
        }
        if self.write {
            p |= libc::PROT_WRITE as u32;
        }
        if self.exec {
            p |= libc::PROT_EXEC as u32;
        }
        p
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// True when `line` starts like a VMA header ("hex-hex ").
fn is_range_line(line: &str) -> bool {
    let b = line.as_bytes();
    let hexes = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_hexdigit() {
            *i += 1;
        }
        *i > s
    };
    let mut i = 0;
    if !hexes(&mut i) || b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    hexes(&mut i) && b.get(i) == Some(&b' ')
}

/// Parse one maps header line.
pub fn parse_maps_line(line: &str, lineno: usize) -> Result<MapsEntry, ParseError> {
    let err = |w: &str| ParseError::new(lineno, format!("{w} in {line:?}"));
    let mut rest = line;
    let mut field = || -> Result<&str, ParseError> {
        let t = rest.trim_start_matches(' ');
        let end = t.find(' ').unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        if f.is_empty() {
            Err(err("missing field"))
        } else {
            Ok(f)
        }
    };
    let range = field()?;
    let perms = field()?;
    let off = field()?;
    let dev = field()?;
    let ino = field()?;
    let (s, e) = range.split_once('-').ok_or_else(|| err("bad range"))?;
    let start = hex_u64(s, lineno, "vma start")?;
    let end = hex_u64(e, lineno, "vma end")?;
    if end < start {
        return Err(err("end below start"));
    }
    let p = perms.as_bytes();
    if p.len() != 4 {
        return Err(err("bad permissions"));
    }
    let shared = match p[3] {
        b's' => true,
        b'p' => false,
        _ => return Err(err("bad sharing flag")),
    };
    let (maj, min) = dev.split_once(':').ok_or_else(|| err("bad device"))?;
    let dev_major = u32::from_str_radix(maj, 16).map_err(|_| err("bad device major"))?;
    let dev_minor = u32::from_str_radix(min, 16).map_err(|_| err("bad device minor"))?;
    let inode = ino.parse::<u64>().map_err(|_| err("bad inode"))?;
    Ok(MapsEntry {
        start,
        end,
        read: p[0] == b'r',
        write: p[1] == b'w',
        exec: p[2] == b'x',
        shared,
        pgoff: hex_u64(off, lineno, "offset")?,
        dev_major,
        dev_minor,
        inode,
        path: rest.trim_start_matches(' ').to_string(),
        vm_flags: None,
        page_size: None,
    })
}

/// Parse `/proc/PID/maps`.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_maps_line(l, i + 1))
        .collect()
}

/// Parse `/proc/PID/smaps`: headers plus their `VmFlags:` lines; other keys are skipped.
pub fn parse_smaps(text: &str) -> Result<Vec<MapsEntry>, ParseError> {
    let mut out: Vec<MapsEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if is_range_line(line) {
            out.push(parse_maps_line(line, i + 1)?);
        } else if let Some(v) = line.strip_prefix("VmFlags:") {
            let last = out
                .last_mut()
                .ok_or_else(|| ParseError::new(i + 1, "VmFlags before any VMA"))?;
            last.vm_flags = Some(VmFlags::parse(v));
        } else if let Some(v) = line.strip_prefix("KernelPageSize:") {
            let last = out
                .last_mut()
                .ok_or_else(|| ParseError::new(i + 1, "KernelPageSize before any VMA"))?;
            let kb = v
                .trim()
                .strip_suffix("kB")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .ok_or_else(|| ParseError::new(i + 1, "bad KernelPageSize"))?;
            last.page_size = Some(kb * 1024);
        }
    }
    Ok(out)
}

/// Read `/proc/PID/maps`.
pub fn read_maps(pid: i32) -> Result<Vec<MapsEntry>, ProcError> {
    read_parsed(pid_path(pid, "maps"), parse_maps)
}

/// Read `/proc/PID/smaps`.
pub fn read_smaps(pid: i32) -> Result<Vec<MapsEntry>, ProcError> {
    read_parsed(pid_path(pid, "smaps"), parse_smaps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str =
        "5641a4e9b000-5641a4e9d000 r--p 00000000 fe:00 247030                     /usr/bin/cat
Size:                  8 kB
Rss:                   8 kB
VmFlags: rd mr mw me 
7f55f090b000-7f55f090f000 r--p 00000000 00:00 0                          [vvar]
Size:                 16 kB
VmFlags: rd mr pf io de dd sd 
7f0000000000-7f0000001000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms sd 
7ffdb1d9d000-7ffdb1dbe000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac 
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn smaps_sample() {
        let v = parse_smaps(SMAPS).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0].start, 0x5641a4e9b000);
        assert_eq!(v[0].path, "/usr/bin/cat");
        assert_eq!(
            (v[0].dev_major, v[0].dev_minor, v[0].inode),
            (0xfe, 0, 247030)
        );
        assert_eq!(v[0].prot(), libc::PROT_READ as u32);
        let f = v[1].vm_flags.as_ref().unwrap();
        assert!(f.has("io") && f.has("dd") && !f.has("gd"));
        assert!(v[2].shared);
        assert_eq!(v[2].path, "/dev/zero (deleted)");
        assert!(v[3].vm_flags.as_ref().unwrap().has("gd"));
        assert_eq!(v[4].prot(), libc::PROT_EXEC as u32);
        assert!(v[4].vm_flags.is_none());
    }

    #[test]
    fn path_with_spaces_kept() {
        let l = "1000-2000 rw-p 00001000 08:01 77   /tmp/a b  c";
        let e = parse_maps_line(l, 1).unwrap();
        assert_eq!(e.path, "/tmp/a b  c");
        assert_eq!(e.pgoff, 0x1000);
        let anon = parse_maps_line("1000-2000 rw-p 00000000 00:00 0", 1).unwrap();
        assert_eq!(anon.path, "");
    }

    #[test]
    fn bad_lines_are_errors() {
        for l in [
            "",
            "zz-2000 rw-p 0 00:00 0",
            "3000-2000 rw-p 0 00:00 0",
            "1000-2000 rw-x 0 00:00 0",
            "1000-2000 rw-p 0 0000 0",
            "1000-2000 rw-p 0 00:00",
        ] {
            assert!(parse_maps_line(l, 1).is_err(), "{l:?}");
        }
        assert!(parse_smaps("VmFlags: rd\n").is_err());
    }

    #[test]
    fn own_maps_and_smaps_agree() {
        let m = read_maps(std::process::id() as i32).unwrap();
        let s = read_smaps(std::process::id() as i32).unwrap();
        assert!(!m.is_empty());
        // The heap may move between the reads; compare the stable executable mappings.
        let exe = |v: &Vec<MapsEntry>| {
            v.iter()
                .filter(|e| e.exec && e.path.starts_with('/'))
                .map(|e| (e.start, e.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(exe(&m), exe(&s));
        assert!(s.iter().all(|e| e.vm_flags.is_some()));
    }

    #[test]
    fn huge_maps() {
        let mut t = String::new();
        for i in 0..20000u64 {
            t.push_str(&format!(
                "{:x}-{:x} rw-p 00000000 00:00 0\n",
                i * 0x2000,
                i * 0x2000 + 0x1000
            ));
        }
        assert_eq!(parse_maps(&t).unwrap().len(), 20000);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_smaps(&s);
            let _ = parse_maps(&s);
        }

        #[test]
        fn roundtrip(start in 0u64..1<<40, len in 1u64..1<<20, off in 0u64..1<<30, ino in 0u64..1<<40,
                     path in "[a-z/ ]{0,20}") {
            let start = start << 12;
            let end = start + (len << 12);
            let line = format!("{start:x}-{end:x} r-xs {off:08x} 0a:1f {ino}   {path}");
            let e = parse_maps_line(&line, 1).unwrap();
            proptest::prop_assert_eq!((e.start, e.end, e.pgoff, e.inode), (start, end, off, ino));
            proptest::prop_assert!(e.shared && e.exec && !e.write);
            proptest::prop_assert_eq!(e.path, path.trim_start_matches(' '));
        }
    }
}
