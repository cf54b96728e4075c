use criu_proto::images::MntEntry;
use proptest::prelude::*;

use super::dump::{MntDumpError, external_key, host_path, plan};
use super::model::{FsKind, Propagation, kdev, mount_flags, super_flags};
use super::tree::{MntTree, Source};
use crate::proc::mountinfo::parse_mountinfo;

const HOST: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
22 27 0:21 / /proc rw,relatime - proc proc rw
45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
";

fn ns(extra: &str) -> String {
    format!(
        "100 99 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
         101 100 0:21 / /proc rw,relatime - proc proc rw\n{extra}"
    )
}

#[test]
fn flags_and_options_as_criu_splits_them() {
    let ms = |f: nix::mount::MsFlags| f.bits() as u32;
    use nix::mount::MsFlags as F;
    assert_eq!(
        mount_flags("ro,nosuid,nodev,relatime"),
        ms(F::MS_RDONLY | F::MS_NOSUID | F::MS_NODEV | F::MS_RELATIME)
    );
    assert_eq!(
        super_flags("rw,size=4k,mode=755"),
        (0, "size=4k,mode=755".into())
    );
    assert_eq!(
        super_flags("ro,sync"),
        (ms(F::MS_RDONLY | F::MS_SYNCHRONOUS), String::new())
    );
    let p = Propagation::parse(&["shared:3".into(), "master:7".into(), "unbindable".into()]);
    assert_eq!((p.shared, p.master, p.unbindable), (3, 7, true));
    assert_eq!(kdev(254, 1), (254 << 20) | 1);
    assert_eq!(FsKind::from_code(5, None), Some(FsKind::Tmpfs));
    assert_eq!(FsKind::from_code(16, Some("ramfs")), Some(FsKind::Ramfs));
    assert_eq!(FsKind::from_code(16, Some("ext4")), None);
}

#[test]
fn mounts_are_classified() {
    let host = parse_mountinfo(HOST).unwrap();
    let text = ns(
        "102 100 0:90 / /mnt/t rw,nosuid - tmpfs tmpfs rw,size=64k\n\
                   103 100 254:0 /srv/data /mnt/b ro,relatime - ext4 /dev/vda rw\n\
                   104 102 0:90 /sub /mnt/t2 rw - tmpfs tmpfs rw,size=64k\n\
                   105 100 0:91 / /mnt/ext rw - ext4 /dev/vdb rw\n",
    );
    let mounts = parse_mountinfo(&text).unwrap();
    let ext = vec!["mnt[/mnt/ext]:data".to_string()];
    let p = plan(&mounts, &host, &ext).unwrap();
    assert_eq!(p[0].entry.criu_rs_host_path.as_deref(), Some("/"));
    assert_eq!(p[1].entry.criu_rs_host_path.as_deref(), Some("/proc"));
    assert!(p[2].contents && p[2].entry.fstype == 5 && p[2].entry.options == "size=64k");
    assert_eq!(p[3].entry.criu_rs_host_path.as_deref(), Some("/srv/data"));
    assert!(
        !p[4].contents,
        "a bind within a tmpfs carries no archive of its own"
    );
    assert_eq!(p[5].entry.ext_key.as_deref(), Some("data"));
    assert_eq!(external_key(&ext, "/mnt/ext").as_deref(), Some("data"));
    assert_eq!(host_path(&mounts[3], &host).as_deref(), Some("/srv/data"));
}

#[test]
fn an_unsupported_mount_is_named() {
    let host = parse_mountinfo(HOST).unwrap();
    let mounts = parse_mountinfo(&ns("102 100 0:95 / /mnt/x rw - xfs /dev/vdc rw\n")).unwrap();
    let err = plan(&mounts, &host, &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, MntDumpError::Unsupported { mnt_id: 102, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("(xfs) at /mnt/x") && msg.contains("--external mnt[/mnt/x]:KEY"),
        "{msg}"
    );
    // Sharing with criu's own mounts, and a master outside: refused.
    let shared = parse_mountinfo(&ns(
        "102 100 254:0 /run/netns /run/netns rw shared:1 - ext4 /dev/vda rw\n",
    ))
    .unwrap();
    let msg = plan(&shared, &host, &[]).unwrap_err().to_string();
    assert!(msg.contains("peer group 1 with criu's"), "{msg}");
    let slave = parse_mountinfo(&ns("102 100 0:90 / /t rw master:9 - tmpfs tmpfs rw\n")).unwrap();
    let msg = plan(&slave, &host, &[]).unwrap_err().to_string();
    assert!(msg.contains("slave of peer group 9"), "{msg}");
}

fn entry(id: u32, parent: u32, mp: &str) -> MntEntry {
    MntEntry {
        fstype: 5,
        mnt_id: id,
        root_dev: id,
        parent_mnt_id: parent,
        root: "/".into(),
        mountpoint: mp.into(),
        source: "tmpfs".into(),
        ..Default::default()
    }
}

#[test]
fn bad_trees_are_refused_naming_image_and_entry() {
    let img = "mountpoints-9.img".to_string();
    let check = |v: Vec<MntEntry>| {
        MntTree::check(img.clone(), v)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let msg = check(vec![entry(1, 0, "/"), entry(2, 7, "/a")]);
    assert!(
        msg.contains("mountpoints-9.img, entry 1") && msg.contains("parent id 7 does not exist"),
        "{msg}"
    );
    let msg = check(vec![
        entry(1, 0, "/"),
        entry(2, 3, "/a"),
        entry(3, 2, "/a/b"),
    ]);
    assert!(msg.contains("entry 1") && msg.contains("cycle"), "{msg}");
    let msg = check(vec![entry(1, 0, "/"), entry(2, 1, "/a/../etc")]);
    assert!(msg.contains("entry 1") && msg.contains(".."), "{msg}");
    let msg = check(vec![entry(1, 0, "/"), entry(1, 1, "/a")]);
    assert!(msg.contains("second mount with this id"), "{msg}");
    let msg = check(vec![entry(2, 1, "/a")]);
    assert!(
        msg.contains("no root mount") || msg.contains("parent id 1"),
        "{msg}"
    );
    let mut bad_host = entry(2, 1, "/a");
    bad_host.criu_rs_host_path = Some("/srv/../etc".into());
    let msg = check(vec![entry(1, 0, "/"), bad_host]);
    assert!(msg.contains("host path"), "{msg}");
}

#[test]
fn binds_within_a_tmpfs_follow_its_root() {
    let mut sub = entry(3, 1, "/b");
    sub.root_dev = 2;
    sub.root = "/dir".into();
    let t = MntTree::check("m".into(), vec![entry(1, 0, "/"), entry(2, 1, "/a"), sub]).unwrap();
    assert_eq!(t.mounts[2].source, Source::BindWithin { bind_of: 1 });
    assert_eq!(
        t.mounts[0].source,
        Source::New {
            kind: FsKind::Tmpfs
        }
    );
}

proptest! {
    /// Any tree (each mount's parent an earlier one), in any order in the image, comes
    /// back complete with every parent before its children.
    #[test]
    fn trees_come_back_parents_first(parents in prop::collection::vec(any::<prop::sample::Index>(), 0..20), seed in any::<u64>()) {
        let mut v = vec![entry(1, 0, "/")];
        for (i, p) in parents.iter().enumerate() {
            let id = i as u32 + 2;
            let parent = &v[p.index(v.len())];
            let mp = format!("{}/m{id}", parent.mountpoint.trim_end_matches('/'));
            v.push(entry(id, parent.mnt_id, &mp));
        }
        // A deterministic shuffle.
        let n = v.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        let t = MntTree::check("m".into(), v).unwrap();
        prop_assert_eq!(t.mounts.len(), n);
        for (i, m) in t.mounts.iter().enumerate().skip(1) {
            let pos = t.mounts.iter().position(|p| p.entry.mnt_id == m.entry.parent_mnt_id).unwrap();
            prop_assert!(pos < i);
        }
    }
}
