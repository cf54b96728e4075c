//! `criu network-unlock -D DIR`: lifts the network lock a dump left in force (the tree's
//! TCP connections stay locked from the dump to the end of their restore; after a failed
//! restore, or when the images are not to be restored, this lifts it by hand).

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Options;

#[cfg(feature = "builtin-plugins")]
pub fn run(opts: &Options) -> Result<ExitCode> {
    use anyhow::Context;
    let dir = super::images_dir(opts)?;
    match criu_plugin_netlock::unlock_images(&dir)
        .with_context(|| format!("lifting the network lock recorded in {}", dir.display()))?
    {
        Some(r) => println!(
            "Network unlocked: {} connection(s), {} lock",
            r.tuples.len(),
            r.method
        ),
        None => println!("No network lock in force for {}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "builtin-plugins"))]
pub fn run(_: &Options) -> Result<ExitCode> {
    anyhow::bail!(
        "not supported yet: 'criu network-unlock' in a criu built without its plugins; \
         run the default build's criu, or remove the pins named in criu-rs-netlock.txt \
         (rm -r /sys/fs/bpf/criu-rs/<netns>-<pid>)"
    )
}
