//! seccomp.img: the filter chains of every thread of the tree, each filter stored once.

use std::collections::HashMap;

use criu_proto::images::{SeccompEntry, SeccompFilter};

/// seccomp.img being built: filters shared between threads and processes are stored once
/// (a filter is identified by its code and the filter before it, as in the kernel's tree).
#[derive(Debug, Default)]
pub struct SeccompImage {
    pub entry: SeccompEntry,
    index: HashMap<(Vec<u8>, Option<u32>), u32>,
}

impl SeccompImage {
    /// Add a thread's filter chain (newest first). Each entry's `prev` names the next older
    /// filter, as CRIU restores it (walk `prev` from the thread's `seccomp_filter`, install
    /// oldest first). Returns the position of the newest filter.
    pub fn add_chain(&mut self, chain: &[Vec<u8>]) -> Option<u32> {
        let mut prev: Option<u32> = None;
        for f in chain.iter().rev() {
            let key = (f.clone(), prev);
            let pos = match self.index.get(&key) {
                Some(&p) => p,
                None => {
                    let p = self.entry.seccomp_filters.len() as u32;
                    self.entry.seccomp_filters.push(SeccompFilter {
                        filter: f.clone(),
                        prev,
                        flags: None,
                    });
                    self.index.insert(key, p);
                    p
                }
            };
            prev = Some(pos);
        }
        prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_chains_link_newest_to_oldest_and_share() {
        let mut img = SeccompImage::default();
        assert_eq!(img.add_chain(&[]), None);
        // Thread A: [new2, old1]; thread B: same chain; thread C: [new3, old1].
        let a = img.add_chain(&[vec![2; 8], vec![1; 8]]).unwrap();
        let b = img.add_chain(&[vec![2; 8], vec![1; 8]]).unwrap();
        let c = img.add_chain(&[vec![3; 8], vec![1; 8]]).unwrap();
        assert_eq!(a, b);
        assert_eq!(img.entry.seccomp_filters.len(), 3);
        let walk = |img: &SeccompImage, mut p: u32| {
            let f = &img.entry.seccomp_filters;
            let mut out = vec![f[p as usize].filter[0]];
            while let Some(q) = f[p as usize].prev {
                out.push(f[q as usize].filter[0]);
                p = q;
            }
            out
        };
        assert_eq!(walk(&img, a), vec![2, 1]);
        assert_eq!(walk(&img, c), vec![3, 1]);
        // The same code after a different predecessor is a different filter.
        let d = img.add_chain(&[vec![1; 8], vec![3; 8]]).unwrap();
        assert_eq!(walk(&img, d), vec![1, 3]);
        assert_eq!(img.entry.seccomp_filters.len(), 5);
    }
}
