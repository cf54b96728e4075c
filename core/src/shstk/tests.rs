//! The refusal and the plan built from image entries, on this host and on pretend hosts.

use criu_proto::images::{UserX86CetEntry, UserX86FpregsEntry, UserX86XsaveEntry};

use super::*;

fn fpregs(cet: Option<(u64, u64)>) -> UserX86FpregsEntry {
    UserX86FpregsEntry {
        xsave: Some(UserX86XsaveEntry {
            cet: cet.map(|(cet, ssp)| UserX86CetEntry { cet, ssp }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host(cpu: bool) -> HostSupport {
    HostSupport {
        kind: "x86 user shadow stack",
        needs: "user_shstk",
        cpu,
        kernel: if cpu {
            Ok(0x7f00_0000_0000)
        } else {
            Err("map_shadow_stack failed: EOPNOTSUPP".into())
        },
        criu_enabled: false,
    }
}

#[test]
fn a_thread_with_a_shadow_stack_is_refused_on_a_host_without() {
    let fp = fpregs(Some((1, 0x7fff_f7ff_fff8)));
    let err = refuse_unsupported(&host(false), 100, 101, "core-101.img", &fp).unwrap_err();
    let msg = err.to_string();
    for want in [
        "pid 100",
        "tid 101",
        "x86 shadow stack",
        "0x7ffff7fffff8",
        "user_shstk",
    ] {
        assert!(msg.contains(want), "{want} missing: {msg}");
    }
    let ok = refuse_unsupported(&host(true), 100, 101, "core-101.img", &fp).unwrap();
    assert_eq!(ok.map(|t| t.ptr), Some(0x7fff_f7ff_fff8));
}

#[test]
fn no_or_zero_cet_state_is_no_shadow_stack_anywhere() {
    for fp in [
        fpregs(None),
        fpregs(Some((0, 0))),
        UserX86FpregsEntry::default(),
    ] {
        assert_eq!(
            refuse_unsupported(&host(false), 1, 1, "core-1.img", &fp),
            Ok(None)
        );
    }
}

#[test]
fn inconsistent_cet_state_names_the_image() {
    let fp = fpregs(Some((2, 0)));
    let err = refuse_unsupported(&host(true), 5, 6, "core-6.img", &fp).unwrap_err();
    assert!(matches!(err, ShstkRefusal::Bad { pid: 5, .. }), "{err:?}");
    assert!(err.to_string().contains("core-6.img"), "{err}");
}

#[test]
fn areas_are_refused_naming_the_image() {
    let err = refuse_area(
        &host(false),
        7,
        "mm-7.img",
        0x7f00_0000_0000,
        0x7f00_0001_0000,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mm-7.img") && err.contains("0x7f0000000000"),
        "{err}"
    );
}

#[test]
fn cpuinfo_flags_are_matched_whole() {
    let text = "processor\t: 0\nflags\t\t: fpu sse2 ibt user_shstkx\n\nflags\t: fpu\n";
    assert!(!host::cpuinfo_has(text, "user_shstk"));
    assert!(host::cpuinfo_has("flags : a user_shstk b\n", "user_shstk"));
}

/// This machine: whatever it has, the probe and the refusal agree.
#[test]
fn this_host_is_probed_consistently() {
    let h = host_support();
    let fp = fpregs(Some((1, 0x7fff_f7ff_fff8)));
    let r = refuse_unsupported(h, 1, 1, "core-1.img", &fp);
    assert_eq!(r.is_ok(), h.restorable().is_ok(), "{h:?}: {r:?}");
    if !h.cpu {
        assert!(
            h.kernel.is_err(),
            "map_shadow_stack worked without the CPU flag: {h:?}"
        );
    }
}
