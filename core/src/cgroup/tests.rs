use criu_proto::images::{
    CgControllerEntry, CgMemberEntry, CgSetEntry, CgroupDirEntry, CgroupEntry,
};

use super::dump::{contains, parse_members};
use super::restore::{check, rewrite_roots};
use super::{CgroupOptions, Mode, props};

fn dir(name: &str, children: Vec<CgroupDirEntry>) -> CgroupDirEntry {
    CgroupDirEntry {
        dir_name: name.into(),
        children,
        properties: Vec::new(),
        dir_perms: None,
    }
}

fn member(name: &str, path: &str) -> CgMemberEntry {
    CgMemberEntry {
        name: name.into(),
        path: path.into(),
        cgns_prefix: None,
    }
}

fn sample() -> CgroupEntry {
    CgroupEntry {
        sets: vec![CgSetEntry {
            id: 2,
            ctls: vec![
                member("", "/a"),
                member("pids", "/a/sub"),
                member("name=x", "/p/old"),
            ],
        }],
        controllers: vec![
            CgControllerEntry {
                cnames: vec!["".into()],
                dirs: vec![dir("a", vec![])],
                is_threaded: Some(false),
            },
            CgControllerEntry {
                cnames: vec!["pids".into()],
                dirs: vec![dir("a", vec![dir("sub", vec![])])],
                is_threaded: Some(true),
            },
            CgControllerEntry {
                cnames: vec!["name=x".into()],
                dirs: vec![dir("p/old", vec![])],
                is_threaded: Some(true),
            },
        ],
    }
}

#[test]
fn members_sorted_and_filtered() {
    let text = "5:pids:/a\n1:name=systemd:/s\n0::/u\n";
    let all = parse_members(text, &CgroupOptions::default()).unwrap();
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["", "name=systemd", "pids"]);
    let only = CgroupOptions {
        dump_controllers: vec!["pids".into()],
        ..Default::default()
    };
    assert_eq!(parse_members(text, &only).unwrap().len(), 1);
    assert!(parse_members("garbage\n", &only).is_err());
}

#[test]
fn controller_matching_like_criu() {
    assert!(contains(&["cpu".into(), "cpuacct".into()], "cpuacct,cpu"));
    assert!(!contains(&["cpu".into()], "cpuacct"));
    assert!(contains(&["".into()], ""));
    assert!(!contains(&["".into()], "pids"));
}

#[test]
fn props_normalized_as_criu_dumps_them() {
    assert_eq!(props::normalize("pids.max", "max\n").unwrap(), "max");
    assert_eq!(
        props::normalize("memory.limit_in_bytes", "9223372036854775807\n").unwrap(),
        "-1"
    );
    assert_eq!(
        props::normalize("memory.oom_control", "oom_kill_disable 1\nunder_oom 0\n").unwrap(),
        "1"
    );
    assert!(props::normalize("memory.oom_control", "junk").is_err());
    assert!(props::is_special("cpuset.cpus") && !props::is_special("pids.max"));
}

#[test]
fn check_names_cgroup_img_for_a_missing_set() {
    let e = check(&sample(), 1, &[(10, 2), (11, 1)]);
    assert!(e.is_ok(), "{e:?}");
    let err = check(&sample(), 1, &[(12, 7)]).unwrap_err().to_string();
    assert!(
        err.contains("cgroup.img") && err.contains("set 7") && err.contains("12"),
        "{err}"
    );
}

#[test]
fn check_refuses_dotdot() {
    let mut e = sample();
    e.controllers[1].dirs[0].children[0].dir_name = "..".into();
    let err = check(&e, 1, &[]).unwrap_err().to_string();
    assert!(
        err.contains("cgroup.img") && err.contains("\"..\""),
        "{err}"
    );
    let mut e = sample();
    e.sets[0].ctls[1].path = "/a/../../etc".into();
    let err = check(&e, 1, &[]).unwrap_err().to_string();
    assert!(err.contains("cgroup.img") && err.contains("set 2"), "{err}");
    let mut e = sample();
    e.controllers[0].dirs[0].dir_name = "x/../y".into();
    assert!(check(&e, 1, &[]).is_err());
}

#[test]
fn cgroup_root_rewrites_heads_and_sets() {
    let mut e = sample();
    let mut o = CgroupOptions::default();
    o.add_root("name=x:/prefix").unwrap();
    o.add_root("/newroot").unwrap();
    assert!(o.add_root("pids:/../up").is_err());
    rewrite_roots(&mut e, &o);
    let paths: Vec<&str> = e.sets[0].ctls.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, ["/newroot", "/newroot/sub", "/prefix"]);
    assert_eq!(e.controllers[1].dirs[0].dir_name, "newroot");
    assert_eq!(e.controllers[1].dirs[0].children[0].dir_name, "sub");
    assert_eq!(e.controllers[2].dirs[0].dir_name, "prefix");
}

#[test]
fn modes_by_name() {
    for m in [
        Mode::Ignore,
        Mode::None,
        Mode::Props,
        Mode::Soft,
        Mode::Full,
        Mode::Strict,
    ] {
        assert_eq!(Mode::from_name(m.name()), Some(m));
    }
    assert_eq!(Mode::from_name("bogus"), None);
    assert_eq!(Mode::default(), Mode::Soft);
}

mod prop {
    use proptest::prelude::*;

    use super::super::restore::rewrite_roots;
    use super::*;

    proptest! {
        /// A set path below the head moves under the new root with the rest kept.
        #[test]
        fn rewrite_keeps_the_tail(head in "[a-z]{1,6}", tail in proptest::collection::vec("[a-z]{1,5}", 0..4)) {
            let rest: String = tail.iter().map(|t| format!("/{t}")).collect();
            let mut e = CgroupEntry {
                sets: vec![CgSetEntry { id: 2, ctls: vec![member("pids", &format!("/{head}{rest}"))] }],
                controllers: vec![CgControllerEntry {
                    cnames: vec!["pids".into()],
                    dirs: vec![dir(&head, vec![])],
                    is_threaded: None,
                }],
            };
            let mut o = CgroupOptions::default();
            o.add_root("pids:/new/root").unwrap();
            rewrite_roots(&mut e, &o);
            prop_assert_eq!(&e.sets[0].ctls[0].path, &format!("/new/root{rest}"));
            prop_assert_eq!(&e.controllers[0].dirs[0].dir_name, "new/root");
        }
    }
}
