//! crit's per-field rendering options (`[(criu).hex = true]` and friends), read once from the
//! descriptor pool, and the flag / dictionary tables pycriu's pb2dict uses.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost_reflect::{FieldDescriptor, Value};

/// The `CRIU_Opts` of one field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldOpts {
    pub hex: bool,
    pub ipadd: bool,
    pub flags: Option<String>,
    pub dev: bool,
    pub odev: bool,
    pub dict: Option<String>,
    pub conv: Option<String>,
}

static NONE: FieldOpts = FieldOpts {
    hex: false,
    ipadd: false,
    flags: None,
    dev: false,
    odev: false,
    dict: None,
    conv: None,
};

fn table() -> &'static HashMap<String, FieldOpts> {
    static TABLE: OnceLock<HashMap<String, FieldOpts>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let pool = crate::descriptor_pool();
        let mut map = HashMap::new();
        let Some(ext) = pool.get_extension_by_name("criu") else {
            return map;
        };
        for msg in pool.all_messages() {
            for field in msg.fields() {
                let options = field.options();
                if !options.has_extension(&ext) {
                    continue;
                }
                let Value::Message(o) = options.get_extension(&ext).into_owned() else {
                    continue;
                };
                let b = |n: &str| {
                    o.get_field_by_name(n)
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                        && o.has_field_by_name(n)
                };
                let s = |n: &str| {
                    if o.has_field_by_name(n) {
                        o.get_field_by_name(n)
                            .and_then(|v| v.as_str().map(str::to_string))
                    } else {
                        None
                    }
                };
                let fo = FieldOpts {
                    hex: b("hex"),
                    ipadd: b("ipadd"),
                    flags: s("flags"),
                    dev: b("dev"),
                    odev: b("odev"),
                    dict: s("dict"),
                    conv: s("conv"),
                };
                map.insert(field.full_name().to_string(), fo);
            }
        }
        map
    })
}

/// The options of `field` (all off when it has none).
pub fn field_opts(field: &FieldDescriptor) -> &'static FieldOpts {
    table().get(field.full_name()).unwrap_or(&NONE)
}

/// pb2dict's flag tables, by the name a `(criu).flags` option gives.
pub fn flags_map(name: &str) -> Option<&'static [(&'static str, u64)]> {
    const MMAP_PROT: &[(&str, u64)] =
        &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];
    const MMAP_FLAGS: &[(&str, u64)] = &[
        ("MAP_SHARED", 0x1),
        ("MAP_PRIVATE", 0x2),
        ("MAP_DROPPABLE", 0x08),
        ("MAP_ANON", 0x20),
        ("MAP_GROWSDOWN", 0x0100),
    ];
    const MMAP_STATUS: &[(&str, u64)] = &[
        ("VMA_AREA_NONE", 0),
        ("VMA_AREA_REGULAR", 1 << 0),
        ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2),
        ("VMA_AREA_VDSO", 1 << 3),
        ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6),
        ("VMA_FILE_SHARED", 1 << 7),
        ("VMA_ANON_SHARED", 1 << 8),
        ("VMA_ANON_PRIVATE", 1 << 9),
        ("VMA_AREA_SYSVIPC", 1 << 10),
        ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12),
        ("VMA_AREA_AIORING", 1 << 13),
        ("VMA_AREA_MEMFD", 1 << 14),
        ("VMA_AREA_SHSTK", 1 << 15),
        ("VMA_AREA_UPROBES", 1 << 17),
        ("VMA_UNSUPP", 1 << 31),
    ];
    const RFILE_FLAGS: &[(&str, u64)] = &[
        ("O_WRONLY", 0o1),
        ("O_RDWR", 0o2),
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
        ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000),
        ("O_DSYNC", 0o10000),
        ("FASYNC", 0o20000),
        ("O_DIRECT", 0o40000),
        ("O_LARGEFILE", 0o100000),
        ("O_DIRECTORY", 0o200000),
        ("O_NOFOLLOW", 0o400000),
        ("O_NOATIME", 0o1000000),
        ("O_CLOEXEC", 0o2000000),
    ];
    const PMAP_FLAGS: &[(&str, u64)] = &[
        ("PE_PARENT", 1 << 0),
        ("PE_LAZY", 1 << 1),
        ("PE_PRESENT", 1 << 2),
    ];
    const SEALS_FLAGS: &[(&str, u64)] = &[
        ("F_SEAL_SEAL", 0x1),
        ("F_SEAL_SHRINK", 0x2),
        ("F_SEAL_GROW", 0x4),
        ("F_SEAL_WRITE", 0x8),
        ("F_SEAL_FUTURE_WRITE", 0x10),
    ];
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

/// pb2dict's dictionaries: (dict name, field name) to value names.
pub fn dict_map(dict: &str, field: &str) -> Option<&'static [(u64, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (2, "Dead"), (3, "Stopped"), (6, "Zombie")],
        ("sk", "family") => &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

/// "A | B | 0x40" as pb2dict's map_flags prints it ("" for zero).
pub fn map_flags(value: u64, map: &[(&str, u64)]) -> String {
    let mut parts: Vec<String> = map
        .iter()
        .filter(|(_, bit)| value & bit != 0)
        .map(|(n, _)| (*n).to_string())
        .collect();
    let known: u64 = map.iter().fold(0, |acc, (_, b)| acc | b);
    let rest = value & !known;
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join(" | ")
}
