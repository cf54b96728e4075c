//! Restore workload: tasks that forked children and then called `setsid()`, leaving those
//! children in the old session, led by a live task of the tree (the root). Extra groups in
//! both sessions, a zombie and a group whose leader is dead in the old session; and a session
//! whose leader forked its members and died unreaped (they went to the root, a child
//! subreaper). Every live process then appends `tick <pid>` to the report every 100 ms.
//!
//! ```text
//! root          session R, group R, PR_SET_CHILD_SUBREAPER
//! ├─ a          forked b1..zz in R, then setsid(): session A
//! │  ├─ b1      session R, group R (inherited)
//! │  ├─ b2      session R, own group B2
//! │  ├─ b3      session R, joins group G of its uncle g (forked later: a larger pid)
//! │  ├─ zz      session R, a zombie
//! │  └─ c       session A, own group C (forked after a's setsid)
//! │     └─ c1   session A, group C
//! ├─ g          session R, own group G
//! ├─ x          forked y in R, then setsid(): session X
//!    ├─ y       session R (its grandparent's); forked z, v, e in R, then setsid(): session Y
//!    │  ├─ z    session R, group R
//!    │  ├─ v    session R, own group V
//!    │  ├─ e    session R, group D, whose leader d (y's child) exited and was reaped
//!    │  └─ w    session Y, group Y
//! │  └─ u       session X, own group U
//! ├─ zl         setsid(), forked m1, m2, m3, exited: a zombie leading session ZL
//! ├─ m1         session ZL, group ZL (re-parented from zl)
//! ├─ m2         session ZL, own group M2
//! └─ m3         session ZL, joins group M2
//! ```
//!
//! Usage: wl_tree_sessions_live REPORT_FILE

use std::time::Duration;

use criu_tests::workload::{fork_child, tick_forever};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, setpgid, setsid};

fn own_group() {
    setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid");
}

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_sessions_live REPORT_FILE");
        std::process::exit(2);
    };
    let _ = setsid();
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!("PR_SET_CHILD_SUBREAPER failed");
        std::process::exit(2);
    }
    // Carries g's pid to b3, forked before g.
    let g_file = format!("{report}.g");
    let _ = std::fs::remove_file(&g_file);
    let gf = g_file.clone();
    let r = report.clone();
    fork_child(move || {
        let r1 = r.clone();
        fork_child(move || tick_forever(&r1));
        let r2 = r.clone();
        let b2 = fork_child(move || {
            own_group();
            tick_forever(&r2)
        });
        let _ = setpgid(b2, b2);
        let r3 = r.clone();
        fork_child(move || {
            let g = loop {
                let pid = std::fs::read_to_string(&gf)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(g) = pid {
                    break g;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            setpgid(Pid::from_raw(0), Pid::from_raw(g)).expect("setpgid b3");
            tick_forever(&r3)
        });
        // zz: exits at once, never reaped.
        fork_child(|| {});
        setsid().expect("setsid a");
        let r4 = r.clone();
        fork_child(move || {
            own_group();
            let r5 = r4.clone();
            fork_child(move || tick_forever(&r5));
            tick_forever(&r4)
        });
        tick_forever(&r)
    });
    let r = report.clone();
    let g = fork_child(move || {
        own_group();
        tick_forever(&r)
    });
    let _ = setpgid(g, g);
    // Written whole under a temporary name: b3 never reads half a pid.
    let tmp = format!("{g_file}.tmp");
    std::fs::write(&tmp, g.to_string()).expect("write g");
    std::fs::rename(&tmp, &g_file).expect("rename g");
    let r = report.clone();
    fork_child(move || {
        let ry = r.clone();
        fork_child(move || y(&ry));
        setsid().expect("setsid x");
        let ru = r.clone();
        fork_child(move || {
            own_group();
            tick_forever(&ru)
        });
        tick_forever(&r)
    });
    // zl: never reaped, so it stays a zombie leading its session.
    let r = report.clone();
    fork_child(move || {
        setsid().expect("setsid zl");
        let r1 = r.clone();
        fork_child(move || tick_forever(&r1));
        let r2 = r.clone();
        let m2 = fork_child(move || {
            own_group();
            tick_forever(&r2)
        });
        let _ = setpgid(m2, m2);
        let r3 = r.clone();
        let m3 = fork_child(move || {
            setpgid(Pid::from_raw(0), m2).expect("setpgid m3");
            tick_forever(&r3)
        });
        let _ = setpgid(m3, m2);
    });
    tick_forever(&report)
}

/// y: children in its grandparent's session R, then its own session.
fn y(r: &str) {
    let rz = r.to_string();
    fork_child(move || tick_forever(&rz));
    let rv = r.to_string();
    let v = fork_child(move || {
        own_group();
        tick_forever(&rv)
    });
    let _ = setpgid(v, v);
    let d = fork_child(|| {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    setpgid(d, d).expect("setpgid d");
    let re = r.to_string();
    let e = fork_child(move || tick_forever(&re));
    setpgid(e, d).expect("setpgid e");
    kill(d, Signal::SIGKILL).expect("kill d");
    waitpid(d, None).expect("reap d");
    setsid().expect("setsid y");
    let rw = r.to_string();
    fork_child(move || tick_forever(&rw));
    tick_forever(r)
}
