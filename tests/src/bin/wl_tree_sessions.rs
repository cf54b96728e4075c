//! Restore workload: three levels, two sessions, several process groups, one group whose
//! leader is dead. Every process then idles, appending `tick <pid>` to the report every
//! 100 ms so the test sees each one run.
//!
//! ```text
//! root        session R, group R
//! ├─ a        new session A (group A)
//! │  ├─ a1    own group A1
//! │  │  └─ a1a  inherits group A1   (third level)
//! │  └─ a2    joins group A1 (led by its sibling)
//! └─ b        own group B (session R)
//!    ├─ b1    inherits group B
//!    ├─ b2    own group B2
//!    └─ e     joins group D, whose leader d (b's child) exited and was reaped
//! ```
//!
//! Usage: wl_tree_sessions REPORT_FILE

use std::time::Duration;

use criu_tests::workload::{fork_child, tick_forever};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, setpgid, setsid};

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_sessions REPORT_FILE");
        std::process::exit(2);
    };
    let _ = setsid();
    let r = report.clone();
    let _a = fork_child(move || {
        setsid().expect("setsid a");
        let r1 = r.clone();
        let a1 = fork_child(move || {
            setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid a1");
            let r2 = r1.clone();
            fork_child(move || tick_forever(&r2));
            tick_forever(&r1)
        });
        // Also from here, so a2 below finds the group whatever a1 did so far.
        let _ = setpgid(a1, a1);
        let r3 = r.clone();
        let a2 = fork_child(move || {
            setpgid(Pid::from_raw(0), a1).expect("setpgid a2");
            tick_forever(&r3)
        });
        let _ = setpgid(a2, a1);
        tick_forever(&r)
    });
    let r = report.clone();
    let _b = fork_child(move || {
        setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid b");
        let r1 = r.clone();
        fork_child(move || tick_forever(&r1));
        let r2 = r.clone();
        let b2 = fork_child(move || {
            setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid b2");
            tick_forever(&r2)
        });
        let _ = setpgid(b2, b2);
        let d = fork_child(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        setpgid(d, d).expect("setpgid d");
        let r3 = r.clone();
        let e = fork_child(move || tick_forever(&r3));
        setpgid(e, d).expect("setpgid e");
        kill(d, Signal::SIGKILL).expect("kill d");
        waitpid(d, None).expect("reap d");
        tick_forever(&r)
    });
    tick_forever(&report)
}
