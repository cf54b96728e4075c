//! The plan against a fake kernel that behaves like the real one where it matters: tokens,
//! fixed placement, enable before pointer.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A fake kernel: shadow-stack areas, their words, per-thread features and pointer.
#[derive(Default)]
struct FakeKernel {
    arch_x86: bool,
    areas: Vec<ShadowStackVma>,
    words: BTreeMap<u64, u64>,
    filled: Vec<u64>,
    features: BTreeMap<i32, u64>,
    locked: BTreeMap<i32, u64>,
    pointer: BTreeMap<i32, u64>,
    log: Vec<String>,
}

impl ShadowStackOps for FakeKernel {
    fn map_shadow_stack(&mut self, addr: u64, size: u64) -> Result<u64, String> {
        self.log.push(format!("map {addr:#x}"));
        if self.arch_x86 && addr < x86::MAP_SHADOW_STACK_MIN_ADDR {
            return Err("ERANGE".into());
        }
        let vma = ShadowStackVma {
            start: addr,
            end: addr + size,
        };
        if self
            .areas
            .iter()
            .any(|a| a.start < vma.end && vma.start < a.end)
        {
            return Err("EEXIST".into());
        }
        self.areas.push(vma);
        let token = if self.arch_x86 {
            x86::map_token(addr, size)
        } else {
            arm64::map_token(addr, size, false)
        }
        .ok_or("ENOSPC")?;
        self.words.insert(token.at, token.value);
        Ok(addr)
    }
    fn read_word(&mut self, addr: u64) -> Result<u64, String> {
        Ok(self.words.get(&addr).copied().unwrap_or(0))
    }
    fn fill(&mut self, vma: &ShadowStackVma) -> Result<(), String> {
        self.log.push(format!("fill {:#x}", vma.start));
        self.filled.push(vma.start);
        Ok(())
    }
    fn enable(&mut self, tid: i32, features: u64) -> Result<(), String> {
        self.log.push(format!("enable {tid} {features:#x}"));
        if self.locked.get(&tid).copied().unwrap_or(0) & features != 0 {
            return Err("EPERM".into());
        }
        *self.features.entry(tid).or_default() |= features;
        Ok(())
    }
    fn set_pointer(&mut self, tid: i32, ptr: u64) -> Result<(), String> {
        self.log.push(format!("ptr {tid} {ptr:#x}"));
        if self.features.get(&tid).copied().unwrap_or(0) & 1 == 0 {
            return Err("ENODEV".into());
        }
        if !ptr.is_multiple_of(8) {
            return Err("EINVAL".into());
        }
        self.pointer.insert(tid, ptr);
        Ok(())
    }
    fn lock(&mut self, tid: i32, features: u64) -> Result<(), String> {
        self.log.push(format!("lock {tid} {features:#x}"));
        *self.locked.entry(tid).or_default() |= features;
        Ok(())
    }
}

fn vma(start: u64, end: u64) -> ShadowStackVma {
    ShadowStackVma { start, end }
}

#[test]
fn x86_thread_with_wrss_is_restored_in_order() {
    let arch = Arch::X86 {
        features: x86::ARCH_SHSTK_SHSTK | x86::ARCH_SHSTK_WRSS,
    };
    let areas = [vma(0x7f00_0000_0000, 0x7f00_0080_0000)];
    let t = ThreadShadowStack::from_x86(
        42,
        x86::Cet {
            features: x86::ARCH_SHSTK_SHSTK | x86::ARCH_SHSTK_WRSS,
            ssp: 0x7f00_007f_ffc8,
        },
    )
    .unwrap()
    .unwrap();
    let mut steps = plan_mm(&arch, &areas).unwrap();
    steps.extend(plan_thread(&t, &areas).unwrap());
    let mut k = FakeKernel {
        arch_x86: true,
        ..FakeKernel::default()
    };
    run(&steps, 42, &mut k).unwrap();
    assert_eq!(
        k.log,
        [
            "map 0x7f0000000000",
            "fill 0x7f0000000000",
            "enable 42 0x1",
            "ptr 42 0x7f00007fffc8",
            "enable 42 0x2",
            "lock 42 0x1",
        ]
    );
    assert_eq!(k.pointer[&42], 0x7f00_007f_ffc8);
}

#[test]
fn disabled_thread_has_no_plan() {
    assert_eq!(
        ThreadShadowStack::from_x86(1, x86::Cet::default()),
        Ok(None)
    );
    let off = arm64::UserGcs::default();
    assert_eq!(ThreadShadowStack::from_arm64(1, off), Ok(None));
}

#[test]
fn arm64_thread_locks_what_was_locked() {
    let gcs = arm64::UserGcs {
        features_enabled: arm64::PR_SHADOW_STACK_ENABLE | arm64::PR_SHADOW_STACK_WRITE,
        features_locked: arm64::PR_SHADOW_STACK_ENABLE,
        gcspr_el0: 0x1000_0ff0,
    };
    let t = ThreadShadowStack::from_arm64(9, gcs).unwrap().unwrap();
    let areas = [vma(0x1000_0000, 0x1000_1000)];
    let mut steps = plan_mm(&t.arch, &areas).unwrap();
    steps.extend(plan_thread(&t, &areas).unwrap());
    let mut k = FakeKernel::default();
    run(&steps, 9, &mut k).unwrap();
    assert_eq!(k.features[&9], 3);
    assert_eq!(k.locked[&9], 1);
    assert_eq!(k.pointer[&9], 0x1000_0ff0);
}

#[test]
fn pointer_outside_every_area_is_refused_before_any_step() {
    let t = ThreadShadowStack {
        tid: 5,
        arch: Arch::X86 { features: 1 },
        ptr: 0x7f00_0100_0000,
    };
    let err = plan_thread(&t, &[vma(0x7f00_0000_0000, 0x7f00_0000_1000)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tid 5: shadow-stack pointer 0x7f0001000000 is in no shadow-stack area of the image"
    );
}

#[test]
fn a_wrong_token_after_mapping_stops_the_restore() {
    struct NoToken(FakeKernel);
    impl ShadowStackOps for NoToken {
        fn map_shadow_stack(&mut self, addr: u64, size: u64) -> Result<u64, String> {
            let r = self.0.map_shadow_stack(addr, size);
            self.0.words.clear();
            r
        }
        fn read_word(&mut self, addr: u64) -> Result<u64, String> {
            self.0.read_word(addr)
        }
        fn fill(&mut self, vma: &ShadowStackVma) -> Result<(), String> {
            self.0.fill(vma)
        }
        fn enable(&mut self, tid: i32, f: u64) -> Result<(), String> {
            self.0.enable(tid, f)
        }
        fn set_pointer(&mut self, tid: i32, p: u64) -> Result<(), String> {
            self.0.set_pointer(tid, p)
        }
        fn lock(&mut self, tid: i32, f: u64) -> Result<(), String> {
            self.0.lock(tid, f)
        }
    }
    let arch = Arch::X86 { features: 1 };
    let steps = plan_mm(&arch, &[vma(0x7f00_0000_0000, 0x7f00_0000_1000)]).unwrap();
    let mut k = NoToken(FakeKernel {
        arch_x86: true,
        ..FakeKernel::default()
    });
    let err = run(&steps, 3, &mut k).unwrap_err();
    assert!(
        err.to_string().contains("not a fresh shadow stack"),
        "{err}"
    );
    assert!(
        k.0.filled.is_empty(),
        "nothing written into an unchecked area"
    );
}

/// Disjoint page-aligned areas above 4 GiB: (start page, pages) pairs laid out in order.
fn areas() -> impl Strategy<Value = Vec<ShadowStackVma>> {
    prop::collection::vec((0u64..64, 1u64..64), 1..6).prop_map(|gaps| {
        let mut at = 0x7f00_0000_0000u64;
        gaps.into_iter()
            .map(|(gap, pages)| {
                at += gap * 4096;
                let v = vma(at, at + pages * 4096);
                at = v.end;
                v
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn restore_token_round_trips(word in 1u64..(x86::TASK_SIZE_MAX / 8)) {
        let ssp = word * 8;
        let t = x86::restore_token(ssp).unwrap();
        prop_assert_eq!(t.at + 8, ssp);
        prop_assert_eq!(x86::parse_restore_token(t.at, t.value), Some(ssp));
        prop_assert_eq!(x86::parse_restore_token(t.at.wrapping_sub(8), t.value), None);
    }

    #[test]
    fn gcs_cap_is_valid_where_it_was_made(at in any::<u64>()) {
        let at = at & !7;
        prop_assert!(arm64::is_gcs_cap(at, arm64::gcs_cap(at)));
        prop_assert!(!arm64::is_gcs_cap(at ^ 0x1000, arm64::gcs_cap(at)));
    }

    /// Any layout, any pointer: the plan either restores exactly that pointer over areas
    /// the fake kernel accepts, or refuses before a step when the pointer is outside.
    #[test]
    fn plan_restores_the_pointer_or_refuses(
        layout in areas(),
        pick in any::<prop::sample::Index>(),
        slot in 0u64..4096,
        wrss in any::<bool>(),
    ) {
        let chosen = layout[pick.index(layout.len())];
        let ssp = chosen.start + (slot * 8) % (chosen.len() + 8);
        let features = x86::ARCH_SHSTK_SHSTK | if wrss { x86::ARCH_SHSTK_WRSS } else { 0 };
        let t = ThreadShadowStack::from_x86(7, x86::Cet { features, ssp }).unwrap().unwrap();
        let mut steps = plan_mm(&t.arch, &layout).unwrap();
        steps.extend(plan_thread(&t, &layout).unwrap());
        let mut k = FakeKernel { arch_x86: true, ..FakeKernel::default() };
        run(&steps, 7, &mut k).unwrap();
        prop_assert_eq!(k.pointer[&7], ssp);
        prop_assert_eq!(k.features[&7], features);
        prop_assert_eq!(k.filled.len(), layout.len());

        let beyond = layout.last().unwrap().end + 4096;
        let out = ThreadShadowStack { ptr: beyond, ..t };
        let outside = matches!(plan_thread(&out, &layout), Err(ShstkError::Outside { .. }));
        prop_assert!(outside);
    }
}
