//! `/proc/PID/mountinfo`: one mount per line (see proc(5)); paths are octal-escaped
//! (`\040` space, `\011` tab, `\012` newline, `\134` backslash).

use super::{ParseError, ProcError, num, pid_path, read_parsed};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mnt_id: i32,
    pub parent_id: i32,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Root of the mount within its file system.
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,...`).
    pub mount_options: String,
    /// Optional fields (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`).
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Undo the kernel's octal escapes.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo_line(line: &str, lineno: usize) -> Result<MountInfo, ParseError> {
    let err = |w: &str| ParseError::new(lineno, format!("{w} in {line:?}"));
    let mut f = line.split(' ');
    let mut next = |what: &str| f.next().filter(|s| !s.is_empty()).ok_or_else(|| err(what));
    let mnt_id = num(next("mount id")?, lineno, "mount id")?;
    let parent_id = num(next("parent id")?, lineno, "parent id")?;
    let (maj, min) = next("device")?
        .split_once(':')
        .ok_or_else(|| err("bad device"))?;
    let dev_major = num(maj, lineno, "major")?;
    let dev_minor = num(min, lineno, "minor")?;
    let root = unescape(next("root")?);
    let mount_point = unescape(next("mount point")?);
    let mount_options = next("options")?.to_string();
    let mut optional = Vec::new();
    loop {
        let t = next("separator")?;
        if t == "-" {
            break;
        }
        optional.push(t.to_string());
    }
    let fs_type = next("fs type")?.to_string();
    // The source may be empty (two spaces in a row).
    let source = unescape(f.next().ok_or_else(|| err("source"))?);
    let super_options = f.next().ok_or_else(|| err("super options"))?.to_string();
    Ok(MountInfo {
        mnt_id,
        parent_id,
        dev_major,
        dev_minor,
        root,
        mount_point,
        mount_options,
        optional,
        fs_type,
        source,
        super_options,
    })
}

pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfo>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_mountinfo_line(l, i + 1))
        .collect()
}

pub fn read_mountinfo(pid: i32) -> Result<Vec<MountInfo>, ProcError> {
    read_parsed(pid_path(pid, "mountinfo"), parse_mountinfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/with\\040space ro,nosuid - tmpfs  ro,size=4k
";

    #[test]
    fn sample() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].mnt_id, m[0].parent_id), (22, 27));
        assert_eq!(m[0].mount_point, "/proc");
        assert_eq!(m[1].optional, vec!["shared:1", "master:2"]);
        assert_eq!((m[1].dev_major, m[1].dev_minor), (254, 0));
        assert_eq!(m[1].fs_type, "ext4");
        assert_eq!(m[2].mount_point, "/mnt/with space");
        assert_eq!(m[2].source, "");
        assert_eq!(m[2].super_options, "ro,size=4k");
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("a\\011b\\134c\\012"), "a\tb\\c\n");
        assert_eq!(unescape("\\9x\\"), "\\9x\\");
    }

    #[test]
    fn bad() {
        assert!(parse_mountinfo("22 27 0:21 / /proc rw\n").is_err());
        assert!(parse_mountinfo("x 27 0:21 / /p rw - proc proc rw\n").is_err());
    }

    #[test]
    fn own_mountinfo_has_root() {
        let m = read_mountinfo(std::process::id() as i32).unwrap();
        assert!(m.iter().any(|e| e.mount_point == "/"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,200}") {
            let _ = parse_mountinfo(&s);
            let _ = unescape(&s);
        }
    }
}
