//! Shadow stacks in the core (x86 CET user shadow stacks; arm64 GCS in [`aarch64`], built on
//! aarch64 only). The arithmetic and the restore plan are in the `criu-shstk` crate; this
//! module holds what needs the kernel: what this host supports ([`host`]), a frozen
//! thread's state at dump ([`x86_64::dump_thread`]), and the refusal of images that need a
//! shadow stack this host cannot give ([`refuse_unsupported`]).
//!
//! Image format: CRIU 4.2's. A thread's state is `user_x86_xsave_entry.cet`
//! (`user_x86_cet_entry { cet, ssp }`: `cet` holds the `ARCH_SHSTK_*` features that
//! `ARCH_SHSTK_STATUS` reported, `ssp` the `NT_X86_SHSTK` regset), and each shadow-stack
//! area is a private anonymous `vma_entry` with `VMA_AREA_SHSTK` (1 << 15) in its status
//! (smaps `VmFlags: ss`), its pages in the pagemap like any other.

pub mod host;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;

pub use host::{HostSupport, host_support};

/// `vma_entry.status` bit of a shadow-stack area (CRIU's `VMA_AREA_SHSTK`).
pub const VMA_AREA_SHSTK: u32 = 1 << 15;

/// An image needs a shadow stack this host cannot provide, or records one inconsistently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShstkRefusal {
    /// A thread ran with a shadow stack; this host has none to give it.
    #[error(
        "pid {pid}, tid {tid}: the thread ran with an {what} (ssp {ssp:#x}, features {features:#x}), \
         which this host cannot restore: {lacks}; restore it on a host with {needs}"
    )]
    Thread {
        pid: i32,
        tid: i32,
        what: &'static str,
        ssp: u64,
        features: u64,
        lacks: String,
        needs: &'static str,
    },
    /// A shadow-stack area is in the image; this host cannot create one.
    #[error(
        "pid {pid}: shadow-stack area {start:#x}-{end:#x} in {image}, which this host cannot \
         create: {lacks}; restore it on a host with {needs}"
    )]
    Area {
        pid: i32,
        image: String,
        start: u64,
        end: u64,
        lacks: String,
        needs: &'static str,
    },
    /// criu itself runs with a shadow stack, which the tasks it forks would inherit.
    #[error(
        "pid {pid}: criu itself runs with a shadow stack, which the restored tasks would \
         inherit; run criu without one (GLIBC_TUNABLES=glibc.cpu.x86_shstk=off)"
    )]
    CriuHasOne { pid: i32 },
    /// The recorded state is not one a kernel could have had.
    #[error("pid {pid}, {image}: {source}")]
    Bad {
        pid: i32,
        image: String,
        #[source]
        source: criu_shstk::ShstkError,
    },
}

/// The per-thread state of a core image, if the thread ran with a shadow stack.
pub fn thread_state(
    tid: i32,
    fpregs: &criu_proto::images::UserX86FpregsEntry,
) -> Result<Option<criu_shstk::ThreadShadowStack>, criu_shstk::ShstkError> {
    let Some(cet) = fpregs.xsave.as_ref().and_then(|x| x.cet) else {
        return Ok(None);
    };
    criu_shstk::ThreadShadowStack::from_x86(
        tid,
        criu_shstk::x86::Cet {
            features: cet.cet,
            ssp: cet.ssp,
        },
    )
}

/// Refuses, before any task exists, a thread (`tid` of `pid`, state from `image`) that ran
/// with a shadow stack when `host` cannot give it one; checks the state either way.
pub fn refuse_unsupported(
    host: &HostSupport,
    pid: i32,
    tid: i32,
    image: &str,
    fpregs: &criu_proto::images::UserX86FpregsEntry,
) -> Result<Option<criu_shstk::ThreadShadowStack>, ShstkRefusal> {
    let state = thread_state(tid, fpregs).map_err(|source| ShstkRefusal::Bad {
        pid,
        image: image.to_owned(),
        source,
    })?;
    if let Some(t) = &state
        && let Err(lacks) = host.restorable()
    {
        let features = match t.arch {
            criu_shstk::Arch::X86 { features } => features,
            criu_shstk::Arch::Arm64 { enabled, .. } => enabled,
        };
        return Err(ShstkRefusal::Thread {
            pid,
            tid,
            what: t.arch.name(),
            ssp: t.ptr,
            features,
            lacks,
            needs: host.needs,
        });
    }
    Ok(state)
}

/// Refuses a shadow-stack area of `image` when `host` cannot create one.
pub fn refuse_area(
    host: &HostSupport,
    pid: i32,
    image: &str,
    start: u64,
    end: u64,
) -> Result<(), ShstkRefusal> {
    host.restorable().map_err(|lacks| ShstkRefusal::Area {
        pid,
        image: image.to_owned(),
        start,
        end,
        lacks,
        needs: host.needs,
    })
}

/// The shadow-stack areas of `mm` (from `image`), refused when this host cannot create them.
pub fn areas_of(
    pid: i32,
    image: &str,
    mm: &criu_proto::images::MmEntry,
) -> Result<Vec<criu_shstk::ShadowStackVma>, ShstkRefusal> {
    let host = host_support();
    let mut areas = Vec::new();
    for v in mm.vmas.iter().filter(|v| v.status & VMA_AREA_SHSTK != 0) {
        refuse_area(host, pid, image, v.start, v.end)?;
        areas.push(criu_shstk::ShadowStackVma {
            start: v.start,
            end: v.end,
        });
    }
    Ok(areas)
}

/// Plans the shadow-stack steps of every task (its areas, then its threads', each pointer
/// checked against the areas of its address space) before any task exists.
pub fn plan_tasks(tasks: &mut [crate::restore::TaskPlan]) -> Result<(), ShstkRefusal> {
    let host = host_support();
    // Tasks forked by criu inherit its shadow stack, which the rebuild unmaps: their first
    // RET would fault, whether they used one or not.
    if host.criu_enabled
        && let Some(t) = tasks.first()
    {
        return Err(ShstkRefusal::CriuHasOne { pid: t.pid });
    }
    for i in 0..tasks.len() {
        let owner = tasks[i].vm_owner;
        let areas = tasks
            .iter()
            .find(|t| t.pid == owner)
            .map(|t| t.shstk_areas.clone())
            .unwrap_or_default();
        let t = &tasks[i];
        let bad = |image: &str, source| ShstkRefusal::Bad {
            pid: t.pid,
            image: image.to_owned(),
            source,
        };
        let mut steps = Vec::new();
        if !t.shstk_areas.is_empty() {
            let arch = criu_shstk::Arch::X86 {
                features: criu_shstk::x86::ARCH_SHSTK_SHSTK,
            };
            let mm = format!("mm-{}.img", t.pid);
            steps = criu_shstk::plan::plan_mm(&arch, &t.shstk_areas).map_err(|e| bad(&mm, e))?;
        }
        for th in &t.threads {
            if let Some(s) = &th.shstk {
                let more =
                    criu_shstk::plan::plan_thread(s, &areas).map_err(|e| bad(&th.image, e))?;
                steps.extend(more);
            }
        }
        tasks[i].shstk_steps = steps;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
