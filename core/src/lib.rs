//! The checkpoint/restore engine.
//!
//! Module map (one concern each):
//! - [`image`]: the images directory: CRIU-framed image files, pages files, 0600 creation.
//! - [`sys`]: the only place with `unsafe`: thin wrappers over ptrace, remote syscalls,
//!   process_vm_readv, pidfd, clone3, prctl and friends.
//! - [`proc`]: parsers for `/proc/PID/*` files.
//! - [`kerndat`]: probes of the running kernel (what `criu check` prints).
//! - [`mnt`]: the root's mount namespace (mountpoints, tmpfs contents, the restored tree).
//! - [`netns`]: network namespaces (rtnetlink, sysctls, CRIU's raw ip images).
//! - [`dump`]: the dump orchestration.
//! - [`restore`]: the restore orchestration.
//! - [`check_images`]: `criu check-images`, an images directory verified without restoring.
//! - [`log_flush`]: the hook that pushes the CLI's buffered log out before forks and exits.

pub mod cgroup;
pub mod check_images;
pub mod dump;
pub mod image;
pub mod kerndat;
pub mod log_flush;
pub mod mnt;
pub mod netns;
pub mod plugins;
pub mod proc;
pub mod restore;
pub mod shstk;
pub mod sys;
