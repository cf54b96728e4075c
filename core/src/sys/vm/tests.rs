use std::time::Instant;

use super::*;

fn me() -> Pid {
    nix::unistd::getpid()
}

/// An anonymous private mapping of `pages` pages, unmapped on drop.
struct Map {
    addr: *mut u8,
    len: usize,
}

impl Map {
    fn new(pages: usize) -> Map {
        let len = pages * 4096;
        // SAFETY: fresh anonymous mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Map {
            addr: p.cast(),
            len,
        }
    }
    fn base(&self) -> u64 {
        self.addr as u64
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ours, len bytes, readable and writable.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping (holes are fine for munmap).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

#[test]
fn read_and_write_self() {
    let mut m = Map::new(4);
    for (i, b) in m.bytes().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let mut buf = vec![0u8; 4 * 4096 - 10];
    read_exact(me(), m.base() + 5, &mut buf).expect("read");
    assert!(
        buf.iter()
            .enumerate()
            .all(|(i, b)| *b == ((i + 5) % 251) as u8)
    );
    write_all(me(), m.base() + 4096, b"hello").expect("write");
    assert_eq!(&m.bytes()[4096..4101], b"hello");
}

#[test]
fn partial_read_stops_at_hole() {
    let mut m = Map::new(3);
    m.bytes().fill(7);
    // SAFETY: unmapping the middle page of our own mapping.
    assert_eq!(unsafe { libc::munmap(m.addr.add(4096).cast(), 4096) }, 0);
    let mut buf = vec![0u8; 3 * 4096];
    let n = read_partial(me(), m.base() + 100, &mut buf).expect("partial");
    assert_eq!(n, 4096 - 100);
    assert!(read_exact(me(), m.base(), &mut buf).is_err());
}

#[test]
fn many_ranges_are_batched() {
    // 3000 single-byte-apart ranges: more than one IOV_MAX batch.
    let mut m = Map::new(3000);
    for p in 0..3000 {
        m.bytes()[p * 4096 + 1] = (p % 256) as u8;
        m.bytes()[p * 4096 + 2] = 0xAB;
    }
    let ranges: Vec<RemoteRange> = (0..3000)
        .map(|p| RemoteRange {
            addr: m.base() + (p * 4096 + 1) as u64,
            len: 2,
        })
        .collect();
    let mut buf = vec![0u8; 6000];
    read_ranges(me(), &ranges, &mut buf).expect("gather");
    for p in 0..3000 {
        assert_eq!(buf[2 * p], (p % 256) as u8);
        assert_eq!(buf[2 * p + 1], 0xAB);
    }
    let data = vec![0x5Au8; 6000];
    write_ranges(me(), &ranges, &data).expect("scatter");
    assert_eq!(m.bytes()[4096 * 2999 + 2], 0x5A);
    assert!(read_ranges(me(), &ranges, &mut buf[..10]).is_err());
}

#[test]
fn proc_mem_read_write() {
    let mut m = Map::new(2);
    m.bytes()[10] = 42;
    let pm = ProcMem::open(me(), true).expect("open");
    let mut b = [0u8; 1];
    pm.read_exact(m.base() + 10, &mut b).expect("pread");
    assert_eq!(b[0], 42);
    pm.write_all(m.base() + 11, &[43]).expect("pwrite");
    assert_eq!(m.bytes()[11], 43);
}

/// Throughput of the two ways to copy 256 MiB: `cargo test -p criu-core --lib
/// sys::vm::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn bench_vm_readv_vs_proc_mem() {
    const MIB: usize = 1 << 20;
    let mut m = Map::new(256 * MIB / 4096);
    m.bytes().fill(1);
    let mut buf = vec![0u8; 256 * MIB];
    buf.fill(0);
    for round in 0..2 {
        let t = Instant::now();
        read_exact(me(), m.base(), &mut buf).expect("readv");
        let a = t.elapsed();
        let pm = ProcMem::open(me(), false).expect("open");
        let t = Instant::now();
        // /proc/PID/mem is read in 1 MiB preads, like a page-copy loop would.
        for off in (0..buf.len()).step_by(MIB) {
            pm.read_exact(m.base() + off as u64, &mut buf[off..off + MIB])
                .expect("pread");
        }
        let b = t.elapsed();
        // Page-sized iovecs: how a dump gathers scattered pages.
        let ranges: Vec<RemoteRange> = (0..256 * MIB / 4096)
            .map(|p| RemoteRange {
                addr: m.base() + (p * 4096) as u64,
                len: 4096,
            })
            .collect();
        let t = Instant::now();
        read_ranges(me(), &ranges, &mut buf).expect("gather");
        let c = t.elapsed();
        let rate = |d: std::time::Duration| 256.0 / d.as_secs_f64();
        println!(
            "round {round}: process_vm_readv 1 iovec {:?} ({:.0} MiB/s); /proc/PID/mem 1 MiB \
             preads {:?} ({:.0} MiB/s); process_vm_readv 4 KiB iovecs {:?} ({:.0} MiB/s)",
            a,
            rate(a),
            b,
            rate(b),
            c,
            rate(c)
        );
    }
}

#[test]
fn proc_mem_reads_what_process_vm_readv_cannot() {
    let mut m = Map::new(1);
    m.bytes()[0] = 99;
    // SAFETY: changing protection of our own mapping; not touched while PROT_NONE.
    let r = unsafe { libc::mprotect(m.addr.cast(), 4096, libc::PROT_NONE) };
    assert_eq!(r, 0);
    let mut b = [0u8; 1];
    let e = read_exact(me(), m.base(), &mut b).expect_err("PROT_NONE via process_vm_readv");
    assert!(
        matches!(
            e,
            VmError::Syscall {
                source: Errno::EFAULT,
                ..
            }
        ),
        "{e}"
    );
    ProcMem::open(me(), false)
        .expect("open")
        .read_exact(m.base(), &mut b)
        .expect("pread through /proc/PID/mem");
    assert_eq!(b[0], 99);
    // SAFETY: back to read-write before the guard unmaps it.
    let r = unsafe { libc::mprotect(m.addr.cast(), 4096, libc::PROT_READ | libc::PROT_WRITE) };
    assert_eq!(r, 0);
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    const PAGES: usize = 64;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Gathering arbitrary ranges (zero-length ones included, more than IOV_MAX of them)
        /// gives exactly the concatenated slices, and scattering them back is the inverse.
        #[test]
        fn gather_scatter_matches_slices(
            spans in proptest::collection::vec((0usize..PAGES * 4096, 0usize..3000), 0..2200)
        ) {
            let mut m = Map::new(PAGES);
            for (i, b) in m.bytes().iter_mut().enumerate() {
                *b = (i * 7 % 253) as u8;
            }
            let ranges: Vec<RemoteRange> = spans
                .iter()
                .map(|&(off, len)| RemoteRange {
                    addr: m.base() + off as u64,
                    len: len.min(PAGES * 4096 - off),
                })
                .collect();
            let total: usize = ranges.iter().map(|r| r.len).sum();
            let mut buf = vec![0u8; total];
            read_ranges(me(), &ranges, &mut buf).expect("gather");
            let mut want = Vec::with_capacity(total);
            for r in &ranges {
                let off = (r.addr - m.base()) as usize;
                want.extend_from_slice(&m.bytes()[off..off + r.len]);
            }
            prop_assert_eq!(&buf, &want);
            // Scatter into a second mapping at the same offsets and compare byte by byte.
            let mut other = Map::new(PAGES);
            let moved: Vec<RemoteRange> = ranges
                .iter()
                .map(|r| RemoteRange { addr: r.addr - m.base() + other.base(), len: r.len })
                .collect();
            write_ranges(me(), &moved, &buf).expect("scatter");
            for r in &ranges {
                let off = (r.addr - m.base()) as usize;
                prop_assert_eq!(&other.bytes()[off..off + r.len], &m.bytes()[off..off + r.len]);
            }
        }
    }
}
