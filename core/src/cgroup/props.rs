//! The properties dumped per controller: CRIU's built-in list (`cgroup-props.c`) and the
//! special ones that must be written when a directory is created.

/// Properties of every cgroup v1 directory.
pub const GLOBAL_V1: &[&str] = &[
    "cgroup.clone_children",
    "notify_on_release",
    "cgroup.procs",
    "tasks",
];

/// Properties of every cgroup v2 directory.
pub const GLOBAL_V2: &[&str] = &[
    "cgroup.subtree_control",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.freeze",
    "cgroup.type",
];

/// The properties of controller `name` (v1), in the order they are written back.
pub fn of_controller(name: &str) -> &'static [&'static str] {
    match name {
        "cpu" => &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
        // limit_in_bytes before memsw.limit_in_bytes: the kernel wants that order.
        "memory" => &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.soft_limit_in_bytes",
            "memory.move_charge_at_immigrate",
            "memory.oom_control",
            "memory.use_hierarchy",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ],
        "cpuset" => &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.memory_migrate",
            "cpuset.cpu_exclusive",
            "cpuset.mem_exclusive",
            "cpuset.mem_hardwall",
            "cpuset.memory_spread_page",
            "cpuset.memory_spread_slab",
            "cpuset.sched_load_balance",
            "cpuset.sched_relax_domain_level",
        ],
        "blkio" => &["blkio.weight"],
        "net_cls" => &["net_cls.classid"],
        "net_prio" => &["net_prio.ifpriomap"],
        "pids" => &["pids.max"],
        "devices" => &["devices.list"],
        _ => &[],
    }
}

/// Written right after the directory is created, before any task or child enters it
/// (later writes fail or are refused by the kernel).
pub fn is_special(name: &str) -> bool {
    matches!(
        name,
        "cpuset.cpus"
            | "cpuset.mems"
            | "devices.list"
            | "memory.kmem.limit_in_bytes"
            | "memory.swappiness"
            | "memory.oom_control"
            | "memory.use_hierarchy"
            | "cgroup.type"
    )
}

/// Only their permissions are dumped (their contents are the members).
pub fn is_membership(name: &str) -> bool {
    name == "cgroup.procs" || name == "tasks"
}

/// The dumped form of a property's contents: the trailing newline dropped, `LLONG_MAX`
/// written as `-1`, `memory.oom_control` reduced to its `oom_kill_disable` number.
pub fn normalize(name: &str, raw: &str) -> Result<String, String> {
    let v = raw.strip_suffix('\n').unwrap_or(raw);
    if name == "memory.oom_control" {
        let first = v.lines().next().unwrap_or_default();
        return first
            .strip_prefix("oom_kill_disable ")
            .map(|n| n.trim().to_string())
            .ok_or_else(|| format!("no oom_kill_disable in {v:?}"));
    }
    if leading_number(v) == Some(i64::MAX) {
        return Ok("-1".into());
    }
    Ok(v.to_string())
}

/// strtoll's reading of the start of `s` (None when no digits).
fn leading_number(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    let digits = &s[..end];
    if digits.trim_start_matches(['-', '+']).is_empty() {
        return None;
    }
    // strtoll saturates: a longer number is LLONG_MAX too.
    Some(digits.parse::<i64>().unwrap_or(if digits.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}
