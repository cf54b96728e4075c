//! What a memfd looks like from outside: its `/proc` link and its hugetlb flags.

/// The link prefix of a memfd (`/proc/PID/fd/N`, `/proc/PID/maps`).
const PREFIX: &str = "/memfd:";
/// The suffix the kernel adds: a memfd has no name in any directory.
const DELETED: &str = " (deleted)";

/// The link of an anonymous shared memory object (`MAP_SHARED|MAP_ANONYMOUS` memory) opened
/// through `/proc/PID/map_files`, or mapped privately from such an fd.
pub const ANON_SHMEM_LINK: &str = "/dev/zero (deleted)";

/// The `memfd_inode_entry.name` CRIU gives an anonymous shared memory object: its link
/// without the suffix.
pub const ANON_SHMEM_NAME: &str = "/dev/zero";

/// Whether `link` is an anonymous shared memory object's.
pub fn is_anon_shmem_link(link: &str) -> bool {
    link == ANON_SHMEM_LINK
}

/// Whether `link` is a memfd's (`/memfd:NAME (deleted)`).
pub fn is_memfd_link(link: &str) -> bool {
    link.starts_with(PREFIX) && link.ends_with(DELETED)
}

/// The name given to `memfd_create` (`NAME` of `/memfd:NAME (deleted)`; may be empty or
/// hold spaces), `None` when `link` is not a memfd's.
pub fn memfd_name(link: &str) -> Option<&str> {
    link.strip_prefix(PREFIX)?.strip_suffix(DELETED)
}

/// `MFD_HUGETLB` with the page size encoded (`log2(size) << MFD_HUGE_SHIFT`), as CRIU
/// records it in `hugetlb_flag`, for a hugetlbfs page size in bytes.
pub fn hugetlb_flag(page_size: u64) -> Option<u32> {
    if !page_size.is_power_of_two() || page_size <= 4096 {
        return None;
    }
    Some(libc::MFD_HUGETLB | (page_size.trailing_zeros() << libc::MFD_HUGE_SHIFT))
}

/// The huge page size (bytes) a `hugetlb_flag` asks for; `None` for the system default
/// (no size encoded).
pub fn hugetlb_page_size(flag: u32) -> Option<u64> {
    let shift = (flag >> libc::MFD_HUGE_SHIFT) & libc::MFD_HUGE_MASK;
    (shift != 0).then(|| 1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(memfd_name("/memfd:shm (deleted)"), Some("shm"));
        assert_eq!(memfd_name("/memfd: a b  (deleted)"), Some(" a b "));
        assert_eq!(memfd_name("/memfd: (deleted)"), Some(""));
        assert_eq!(memfd_name("/memfd:x"), None);
        assert_eq!(memfd_name("/tmp/memfd:x (deleted)"), None);
        assert!(is_memfd_link("/memfd:wayland-shm (deleted)"));
        assert!(!is_memfd_link("/secretmem (deleted)"));
        assert!(!is_memfd_link("/dev/zero (deleted)"));
        assert!(is_anon_shmem_link("/dev/zero (deleted)"));
        assert!(!is_anon_shmem_link("/dev/zero"));
        assert!(!is_anon_shmem_link("/memfd:x (deleted)"));
    }

    #[test]
    fn hugetlb_flags_round_trip() {
        // MFD_HUGE_2MB and MFD_HUGE_1GB of linux/memfd.h.
        assert_eq!(hugetlb_flag(2 << 20), Some(libc::MFD_HUGETLB | (21 << 26)));
        assert_eq!(hugetlb_flag(1 << 30), Some(libc::MFD_HUGETLB | (30 << 26)));
        assert_eq!(hugetlb_flag(4096), None);
        assert_eq!(hugetlb_flag(3 << 20), None);
        assert_eq!(
            hugetlb_page_size(libc::MFD_HUGETLB | (21 << 26)),
            Some(2 << 20)
        );
        assert_eq!(hugetlb_page_size(libc::MFD_HUGETLB), None);
    }
}
