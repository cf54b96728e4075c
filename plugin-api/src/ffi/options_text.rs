//! Options added after API 0.6 cross the boundary by name, as text: one host function per
//! direction serves every later field, so a new option needs no new FFI method, and a host or
//! plugin that does not know a name leaves the field at its default.
//!
//! Text forms: a flag is `"1"` or `"0"`; the network lock its [`NetworkLock::name`]; a list
//! its items joined by `'\n'` (no item holds a newline: they come from one command-line
//! argument each).

use crate::{DumpOptions, NetworkLock, RestoreOptions};

/// Names of the [`DumpOptions`] fields that cross as text.
pub(crate) const DUMP_NAMES: [&str; 9] = [
    "tcp_established",
    "skip_in_flight",
    "file_locks",
    "ext_unix_sk",
    "leave_running",
    "network_lock",
    "external",
    "link_remap",
    "tcp_close",
];

/// Names of the [`RestoreOptions`] fields that cross as text.
pub(crate) const RESTORE_NAMES: [&str; 6] = [
    "tcp_established",
    "tcp_close",
    "file_locks",
    "ext_unix_sk",
    "network_lock",
    "external",
];

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

fn list(items: &[String]) -> String {
    items.join("\n")
}

fn parse_list(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split('\n').map(str::to_string).collect()
    }
}

/// The text of the dump option `name`; `None` for a name this side does not know.
pub(crate) fn dump(o: &DumpOptions, name: &str) -> Option<String> {
    Some(match name {
        "tcp_established" => flag(o.tcp_established),
        "skip_in_flight" => flag(o.skip_in_flight),
        "file_locks" => flag(o.file_locks),
        "ext_unix_sk" => flag(o.ext_unix_sk),
        "leave_running" => flag(o.leave_running),
        "network_lock" => o.network_lock.name().to_string(),
        "external" => list(&o.external),
        "link_remap" => flag(o.link_remap),
        "tcp_close" => flag(o.tcp_close),
        _ => return None,
    })
}

/// The text of the restore option `name`; `None` for a name this side does not know.
pub(crate) fn restore(o: &RestoreOptions, name: &str) -> Option<String> {
    Some(match name {
        "tcp_established" => flag(o.tcp_established),
        "tcp_close" => flag(o.tcp_close),
        "file_locks" => flag(o.file_locks),
        "ext_unix_sk" => flag(o.ext_unix_sk),
        "network_lock" => o.network_lock.name().to_string(),
        "external" => list(&o.external),
        _ => return None,
    })
}

/// Sets every field of `o` the host answers for through `get`; a value this side cannot
/// parse leaves the field at its default (the host wrote it, so it cannot happen between
/// matching versions).
pub(crate) fn fill_dump(o: &mut DumpOptions, get: impl Fn(&str) -> Option<String>) {
    for name in DUMP_NAMES {
        let Some(v) = get(name) else { continue };
        match name {
            "tcp_established" => o.tcp_established = v == "1",
            "skip_in_flight" => o.skip_in_flight = v == "1",
            "file_locks" => o.file_locks = v == "1",
            "ext_unix_sk" => o.ext_unix_sk = v == "1",
            "leave_running" => o.leave_running = v == "1",
            "network_lock" => o.network_lock = NetworkLock::from_name(&v).unwrap_or_default(),
            "external" => o.external = parse_list(&v),
            "link_remap" => o.link_remap = v == "1",
            "tcp_close" => o.tcp_close = v == "1",
            _ => {}
        }
    }
}

/// [`fill_dump`] for restore options.
pub(crate) fn fill_restore(o: &mut RestoreOptions, get: impl Fn(&str) -> Option<String>) {
    for name in RESTORE_NAMES {
        let Some(v) = get(name) else { continue };
        match name {
            "tcp_established" => o.tcp_established = v == "1",
            "tcp_close" => o.tcp_close = v == "1",
            "file_locks" => o.file_locks = v == "1",
            "ext_unix_sk" => o.ext_unix_sk = v == "1",
            "network_lock" => o.network_lock = NetworkLock::from_name(&v).unwrap_or_default(),
            "external" => o.external = parse_list(&v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dump_option_survives_the_text_form() {
        let o = DumpOptions {
            tcp_established: true,
            skip_in_flight: true,
            file_locks: true,
            ext_unix_sk: true,
            leave_running: true,
            network_lock: NetworkLock::Nftables,
            external: vec!["unix[12]".into(), "mnt[a]:b".into()],
            link_remap: true,
            tcp_close: true,
            ..DumpOptions::default()
        };
        let mut back = DumpOptions::default();
        fill_dump(&mut back, |n| dump(&o, n));
        assert_eq!(back, o);
    }

    #[test]
    fn every_restore_option_survives_the_text_form() {
        let o = RestoreOptions {
            tcp_established: true,
            tcp_close: true,
            file_locks: true,
            ext_unix_sk: true,
            network_lock: NetworkLock::Skip,
            external: vec!["veth[x]:y".into()],
            ..RestoreOptions::default()
        };
        let mut back = RestoreOptions::default();
        fill_restore(&mut back, |n| restore(&o, n));
        assert_eq!(back, o);
    }

    #[test]
    fn an_older_host_leaves_the_defaults() {
        let mut back = DumpOptions::default();
        fill_dump(&mut back, |_| None);
        assert_eq!(back, DumpOptions::default());
        let mut back = RestoreOptions::default();
        fill_restore(&mut back, |_| None);
        assert_eq!(back, RestoreOptions::default());
    }
}
