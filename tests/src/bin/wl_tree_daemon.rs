//! Restore workload: a daemon-style double fork under a child subreaper. The session leader
//! `l` forks its members and exits; they are re-parented to the root (a subreaper), keeping
//! the dead leader's session and groups. Every process then idles, appending `tick <pid>`
//! to the report every 100 ms so the test sees each one run.
//!
//! ```text
//! root           session R, group R, PR_SET_CHILD_SUBREAPER
//! ├─ c           own group C (session R)
//! │  (l          new session L, exited and reaped by root)
//! ├─ g1          session L, own group G1         (was l's child)
//! │  └─ g1a      session L, inherits group G1    (third level)
//! ├─ g2          session L, group L (dead leader)
//! ├─ g3          session L, joins group G1
//! │  (g4         session L, own group G4, killed and reaped by l)
//! └─ g5          session L, joins group G4 (dead leader)
//! ```
//!
//! Usage: wl_tree_daemon REPORT_FILE

use std::time::Duration;

use criu_tests::workload::{fork_child, tick_forever};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, setpgid, setsid};

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_daemon REPORT_FILE");
        std::process::exit(2);
    };
    let _ = setsid();
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!("PR_SET_CHILD_SUBREAPER failed");
        std::process::exit(2);
    }
    let r = report.clone();
    let c = fork_child(move || {
        setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid c");
        tick_forever(&r)
    });
    let _ = setpgid(c, c);
    let r = report.clone();
    let l = fork_child(move || {
        setsid().expect("setsid l");
        let r1 = r.clone();
        let g1 = fork_child(move || {
            setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid g1");
            let r2 = r1.clone();
            fork_child(move || tick_forever(&r2));
            tick_forever(&r1)
        });
        // Also from here, so g3 below finds the group whatever g1 did so far.
        let _ = setpgid(g1, g1);
        let r2 = r.clone();
        fork_child(move || tick_forever(&r2));
        let r3 = r.clone();
        let g3 = fork_child(move || {
            setpgid(Pid::from_raw(0), g1).expect("setpgid g3");
            tick_forever(&r3)
        });
        let _ = setpgid(g3, g1);
        let g4 = fork_child(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        setpgid(g4, g4).expect("setpgid g4");
        let r5 = r.clone();
        let g5 = fork_child(move || tick_forever(&r5));
        setpgid(g5, g4).expect("setpgid g5");
        kill(g4, Signal::SIGKILL).expect("kill g4");
        waitpid(g4, None).expect("reap g4");
        // The daemon's double fork: the leader leaves, its members stay in its session.
    });
    waitpid(l, None).expect("reap l");
    tick_forever(&report)
}
