//! Interoperability with Debian's crit 3.17: for every image kind crit knows, an image
//! written by our writer decodes with `crit decode` to the JSON we produce ourselves (modulo
//! the documented 3.17-vs-4.2 differences in `criu_proto::json::compat`), and JSON encoded by
//! `crit encode` reads back with our reader.
//!
//! Without crit this test skips with a message, except under CI (env CI set), where a
//! missing crit is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use criu_core::image::ImageDir;
use criu_proto::ImageKind;
use criu_proto::json::{self, DecodeOptions, compat};

use criu_plugin_files as _;
use criu_plugin_memfd as _;
use criu_plugin_pipes as _;
use criu_proto::prost_reflect::{Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

/// Kinds crit 3.17's image handler table covers (and our schema too).
const CRIT_317_KINDS: &[&str] = &[
    "INVENTORY",
    "CORE",
    "IDS",
    "CREDS",
    "UTSNS",
    "TIMENS",
    "PIDNS",
    "IPC_VAR",
    "FS",
    "GHOST_FILE",
    "MM",
    "CGROUP",
    "TCP_STREAM",
    "STATS",
    "PAGEMAP",
    "PSTREE",
    "REG_FILES",
    "NS_FILES",
    "EVENTFD_FILE",
    "EVENTPOLL_FILE",
    "EVENTPOLL_TFD",
    "SIGNALFD",
    "TIMERFD",
    "INOTIFY_FILE",
    "INOTIFY_WD",
    "FANOTIFY_FILE",
    "FANOTIFY_MARK",
    "VMAS",
    "PIPES",
    "FIFO",
    "SIGACT",
    "NETLINK_SK",
    "REMAP_FPATH",
    "MNTS",
    "TTY_FILES",
    "TTY_INFO",
    "TTY_DATA",
    "RLIMIT",
    "TUNFILE",
    "EXT_FILES",
    "IRMAP_CACHE",
    "FILE_LOCKS",
    "FDINFO",
    "UNIXSK",
    "INETSK",
    "PACKETSK",
    "ITIMERS",
    "POSIX_TIMERS",
    "NETDEV",
    "PIPES_DATA",
    "FIFO_DATA",
    "SK_QUEUES",
    "IPCNS_SHM",
    "IPCNS_SEM",
    "IPCNS_MSG",
    "NETNS",
    "USERNS",
    "SECCOMP",
    "AUTOFS",
    "FILES",
    "CPUINFO",
    "MEMFD_INODE",
    "BPFMAP_FILE",
    "BPFMAP_DATA",
    "APPARMOR",
];

/// crit 3.17's `encode` fails on these under Python 3 (it passes a str to
/// base64.decodebytes in their extra handlers), so only the decode direction is checked.
const CRIT_317_ENCODE_BROKEN: &[&str] = &["BPFMAP_DATA", "IPCNS_SHM"];

fn crit() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("crit"))
        .find(|p| p.is_file())
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn b64(data: &[u8]) -> Value {
    Value::String(json::b64_encode_lines(data))
}

/// A plausible value for every field (required ones always, others while shallow), as
/// plain crit JSON. Values avoid what 3.17 renders differently (see compat).
fn fill(desc: &MessageDescriptor, depth: usize) -> Value {
    let mut m = Map::new();
    for f in desc.fields() {
        if compat::NEW_AFTER_3_17.contains(&(desc.name(), f.name())) {
            continue;
        }
        let is_msg = matches!(f.kind(), Kind::Message(_));
        if is_msg && depth >= 3 && !f.is_required() {
            continue;
        }
        let opts = json::field_opts(&f);
        let n = u64::from(f.number());
        let one = |_: usize| -> Value {
            match f.kind() {
                Kind::Message(sub) => fill(&sub, depth + 1),
                Kind::Enum(e) => Value::String(
                    e.values()
                        .next()
                        .map(|v| v.name().to_string())
                        .unwrap_or_default(),
                ),
                Kind::Bool => Value::Bool(true),
                Kind::String => Value::String(format!("{}-{}", desc.name(), f.name())),
                Kind::Bytes if opts.conv.is_some() => Value::String("/tmp/sock".into()),
                Kind::Bytes => b64(format!("bytes of {}", f.name()).as_bytes()),
                Kind::Int32
                | Kind::Int64
                | Kind::Sint32
                | Kind::Sint64
                | Kind::Sfixed32
                | Kind::Sfixed64 => json!(-(n as i64)),
                Kind::Float | Kind::Double => json!(1.5),
                _ if opts.flags.is_some() || opts.dict.is_some() => json!(1),
                _ => json!(100 + n),
            }
        };
        let v = if f.is_list() {
            if opts.ipadd {
                json!(["10.1.2.3"])
            } else if is_msg {
                json!([one(0)])
            } else {
                Value::Array(vec![one(0), one(1)])
            }
        } else {
            one(0)
        };
        m.insert(f.name().to_string(), v);
    }
    Value::Object(m)
}

fn set(v: &mut Value, key: &str, val: Value) {
    if let Value::Object(m) = v {
        m.insert(key.to_string(), val);
    }
}

/// One plausible image document of `kind`, with consistent payload sizes.
fn document(kind: ImageKind) -> Value {
    let pool = criu_proto::descriptor_pool();
    let entry = |i: usize| {
        fill(
            &pool
                .get_message_by_name(kind.entry_message_name(i))
                .unwrap(),
            0,
        )
    };
    let mut e = entry(0);
    let mut entries = Vec::new();
    match kind {
        ImageKind::PipesData | ImageKind::FifoData => {
            set(&mut e, "bytes", json!(4));
            set(&mut e, "extra", b64(b"data"));
        }
        ImageKind::SkQueues => {
            set(&mut e, "length", json!(5));
            set(&mut e, "extra", b64(b"queue"));
        }
        ImageKind::TcpStream => {
            set(&mut e, "inq_len", json!(2));
            set(&mut e, "outq_len", json!(3));
            set(
                &mut e,
                "extra",
                json!({"inq": b64(b"in"), "outq": b64(b"out")}),
            );
        }
        ImageKind::BpfmapData => {
            set(&mut e, "keys_bytes", json!(2));
            set(&mut e, "values_bytes", json!(2));
            set(&mut e, "extra", b64(b"kkvv"));
        }
        ImageKind::IpcnsShm => {
            set(&mut e, "size", json!(5));
            set(&mut e, "in_pagemaps", json!(false));
            set(&mut e, "extra", b64(b"hello"));
        }
        ImageKind::IpcnsSem => {
            set(&mut e, "nsems", json!(3));
            set(&mut e, "extra", json!([1, 2, 3]));
        }
        ImageKind::IpcnsMsg => {
            set(&mut e, "qnum", json!(2));
            set(
                &mut e,
                "extra",
                json!([{"mtype": 1, "msize": 2}, b64(b"hi"), {"mtype": 2, "msize": 9}, b64(b"123456789")]),
            );
        }
        ImageKind::GhostFile => {
            set(&mut e, "chunks", json!(false));
            set(&mut e, "extra", b64(b"ghost file contents"));
        }
        ImageKind::Pagemap => {
            entries.push(e);
            e = entry(1);
            set(&mut e, "flags", json!(4));
        }
        _ => {}
    }
    entries.push(e);
    json!({"magic": kind.name(), "entries": entries})
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run crit");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn crit_decode(crit: &Path, file: &Path, pretty: bool) -> Value {
    let mut cmd = Command::new(crit);
    cmd.arg("decode").arg("-i").arg(file);
    if pretty {
        cmd.arg("--pretty");
    }
    serde_json::from_slice(&run(&mut cmd)).expect("crit prints JSON")
}

#[test]
fn crit_317_reads_our_images_and_we_read_its() {
    let Some(crit) = crit() else {
        if std::env::var_os("CI").is_some() {
            panic!("crit is not installed (apt-get install -y criu); required under CI");
        }
        eprintln!("skipping crit interop: no crit on PATH (apt-get install -y criu)");
        return;
    };
    let tmp = TempDir(std::env::temp_dir().join(format!("crit-interop-{}", std::process::id())));
    let dir = ImageDir::create(&tmp.0).unwrap();
    let mut checked = 0;
    for name in CRIT_317_KINDS {
        let kind = ImageKind::from_name(name).unwrap_or_else(|| panic!("kind {name}"));
        let doc = document(kind);
        let bytes = json::encode(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Write it with our image writer.
        let raw = criu_proto::framing::parse_as(kind, &bytes).unwrap();
        dir.write_raw_image(&raw, 1).unwrap();
        let file = dir.file_path(kind, 1);

        for pretty in [true, false] {
            let theirs = crit_decode(&crit, &file, pretty);
            let mut ours = json::decode_as(
                kind,
                &std::fs::read(&file).unwrap(),
                DecodeOptions {
                    pretty,
                    no_payload: false,
                },
            )
            .unwrap();
            compat::to_crit_317(&mut ours);
            assert_eq!(
                ours, theirs,
                "{name} (pretty {pretty}): crit 3.17 decodes differently"
            );
        }

        if !CRIT_317_ENCODE_BROKEN.contains(name) {
            // crit encode of the 3.17 view of our JSON, read back by us.
            let mut plain = json::decode(&bytes, DecodeOptions::default()).unwrap();
            compat::to_crit_317(&mut plain);
            let jpath = tmp.0.join(format!("{name}.json"));
            let opath = tmp.0.join(format!("{name}.crit.img"));
            std::fs::write(&jpath, serde_json::to_vec(&plain).unwrap()).unwrap();
            run(Command::new(&crit)
                .arg("encode")
                .arg("-i")
                .arg(&jpath)
                .arg("-o")
                .arg(&opath));
            let back_bytes = std::fs::read(&opath).unwrap();
            let mut back = json::decode(&back_bytes, DecodeOptions::default())
                .unwrap_or_else(|e| panic!("{name}: our reader rejects crit's image: {e}"));
            compat::to_crit_317(&mut back);
            assert_eq!(
                back, plain,
                "{name}: crit encode does not read back the same"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, CRIT_317_KINDS.len());
}

/// A real dump with memfds (fds, shared and private mappings, a mapping whose fd is closed):
/// crit 3.17 decodes its memfd.img, files.img (MEMFD entries), mm.img (VMA_AREA_MEMFD
/// areas) and the memfds' pagemap-shmem images as we do.
#[test]
fn crit_317_decodes_a_memfd_dump() {
    if criu_tests::skip_unless_root("crit_317_decodes_a_memfd_dump") {
        return;
    }
    let Some(crit) = crit() else {
        if std::env::var_os("CI").is_some() {
            panic!("crit is not installed (apt-get install -y criu); required under CI");
        }
        eprintln!("skipping crit memfd interop: no crit on PATH (apt-get install -y criu)");
        return;
    };
    let w = criu_tests::Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_memfd")),
        &[],
        "ready",
        std::time::Duration::from_secs(20),
    );
    let pid = w.pid();
    let d = criu_tests::ScratchDir::new("crit-memfd");
    let mut o = criu_core::dump::DumpOptions::new(pid, d.path());
    o.leave_running = true;
    criu_core::dump::dump(&o).expect("dump");
    drop(w);
    let mut files = vec![
        "memfd.img".to_string(),
        "files.img".to_string(),
        format!("mm-{pid}.img"),
    ];
    for e in std::fs::read_dir(d.path()).expect("images") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        if name.starts_with("pagemap-shmem-") {
            files.push(name);
        }
    }
    assert!(files.len() >= 5, "two memfds' contents: {files:?}");
    for name in &files {
        let path = d.path().join(name);
        let (kind, _) = ImageKind::from_file_name(name).unwrap_or_else(|| panic!("kind of {name}"));
        let theirs = crit_decode(&crit, &path, true);
        let mut ours = json::decode_as(
            kind,
            &std::fs::read(&path).expect("image"),
            DecodeOptions {
                pretty: true,
                no_payload: false,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        compat::to_crit_317(&mut ours);
        assert_eq!(ours, theirs, "{name}: crit 3.17 decodes differently");
    }
    let inodes = crit_decode(&crit, &d.path().join("memfd.img"), true);
    let mut names: Vec<&str> = inodes["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["wl-closed", "wl-memfd"]);
    let files_img = crit_decode(&crit, &d.path().join("files.img"), true);
    let memfds = files_img["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["type"] == "MEMFD" && e["memfd"]["inode_id"].is_u64())
        .count();
    assert!(memfds >= 3, "{files_img}");
    // 3.17 has no name for VMA_AREA_MEMFD (1 << 14): the plain numbers show it.
    let mm = crit_decode(&crit, &d.path().join(format!("mm-{pid}.img")), false);
    let areas = mm["entries"][0]["vmas"]
        .as_array()
        .expect("vmas")
        .iter()
        .filter(|v| v["status"].as_u64().is_some_and(|s| s & (1 << 14) != 0))
        .count();
    assert_eq!(areas, 3, "{mm}");
}
