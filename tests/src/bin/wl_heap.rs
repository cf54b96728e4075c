//! Workload for the compression bench: a Rust program whose heap holds real data, a map from
//! numbers to formatted records and a vector of floats, about MIB MiB in all; prints "ready"
//! and idles until killed.
//!
//! Usage: wl_heap MIB

use std::collections::HashMap;
use std::io::Write;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: wl_heap MIB");
    // About 100 bytes per entry with the String and the table slot.
    let n = mib * (1 << 20) / 100;
    let mut map: HashMap<u64, String> = HashMap::with_capacity(n);
    for i in 0..n as u64 {
        map.insert(
            i,
            format!("user-{i:08} score={} tag={:x}", i * 7 % 1000, i ^ 0x5bd1),
        );
    }
    let floats: Vec<f64> = (0..n).map(|i| (i as f64).sqrt()).collect();
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        std::hint::black_box((&map, &floats));
    }
}
