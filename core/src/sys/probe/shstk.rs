//! Shadow-stack probes run in criu itself: `map_shadow_stack` (the call restore needs, made
//! once and undone) and criu's own `ARCH_SHSTK_STATUS` (CRIU's `kdat_has_shstk`: whether
//! criu itself runs with a shadow stack, which the tasks it forks would inherit).

use criu_shstk::x86;

use super::{Result, err};

/// `map_shadow_stack(0, 4096, SHADOW_STACK_SET_TOKEN)` then `munmap`: the address the kernel
/// chose. EOPNOTSUPP without CPU or kernel support (`CONFIG_X86_USER_SHADOW_STACK`).
pub fn map_shadow_stack_roundtrip() -> Result<u64> {
    // SAFETY: a new mapping at an address the kernel picks (addr 0): nothing of ours moves.
    let addr = unsafe {
        libc::syscall(
            x86::SYS_MAP_SHADOW_STACK as libc::c_long,
            0u64,
            4096u64,
            x86::SHADOW_STACK_SET_TOKEN,
        )
    };
    if addr < 0 {
        return Err(err("map_shadow_stack"));
    }
    // SAFETY: unmaps exactly the page the kernel just mapped for us.
    unsafe { libc::munmap(addr as usize as *mut libc::c_void, 4096) };
    Ok(addr as u64)
}

/// criu's own enabled `ARCH_SHSTK_*` features; EINVAL on kernels/CPUs without them.
pub fn own_shstk_status() -> Result<u64> {
    let mut features: u64 = 0;
    // SAFETY: ARCH_SHSTK_STATUS stores one unsigned long at the address passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            x86::ARCH_SHSTK_STATUS,
            &mut features as *mut u64,
        )
    };
    if r < 0 {
        return Err(err("arch_prctl(ARCH_SHSTK_STATUS)"));
    }
    Ok(features)
}
