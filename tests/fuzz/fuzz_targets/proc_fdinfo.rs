//! Arbitrary text through the fdinfo parsers (`criu_core::proc::fdinfo::parse_fdinfo`, the
//! plugin test kit's `criu_plugin_api::testing::parse_fdinfo`, the epoll plugin's `tfd:`
//! lines and the eventfd plugin's counter lines), the `lock:` lines (`proc::locks`), the
//! typed fdinfo fields plugins read (`FdInfo::{parse, hex, octal, list}`) and the limits
//! parser.
//! Errors are fine, panics are not.
#![no_main]

use criu_core::proc::{fdinfo, limits, locks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(info) = fdinfo::parse_fdinfo(&text) {
        for key in ["pos", "flags", "mnt_id", "ino", "eventfd-count", "", ":"] {
            let _ = info.get(key);
        }
        let _ = locks::fd_locks(&info);
    }
    if let Ok(info) = criu_plugin_api::testing::parse_fdinfo(&text) {
        let _ = (info.file_flags(), info.cloexec());
        for key in ["pos", "tfd", "eventfd-count", "flags", "clockid", "ticks", ""] {
            let _ = info.field(key);
            let _ = info.parse::<i64>(key);
            let _ = info.hex::<u32>(key);
            let _ = info.octal::<u64>(key);
            let _ = info.list::<u64>(key);
        }
    }
    if let Ok(regs) = criu_plugin_epoll::parse_registrations(&text) {
        // Every accepted registration has a real fd number, and `toff` counts the earlier
        // registrations of the same number.
        for (i, r) in regs.iter().enumerate() {
            assert!(r.tfd >= 0);
            let before = regs[..i].iter().filter(|o| o.tfd == r.tfd).count();
            assert_eq!(r.toff as usize, before);
            assert_eq!(r.pos.is_some(), r.sdev.is_some());
        }
    }
    let _ = criu_plugin_eventfd::parse_eventfd(&text);
    let _ = limits::parse_limits(&text);
});
