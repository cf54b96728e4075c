//! `criu --help`: the usage, then every option of CRIU's table grouped by what this
//! implementation does with it ([`crate::optable::Class`]).

use std::fmt::Write;

use crate::optable::{Class, HasArg, OPTIONS, OptSpec};

const USAGE: &str = "\
Usage:
  criu dump|pre-dump -t PID [<options>]
  criu restore [<options>]
  criu check [--feature FEATURE]
  criu network-unlock -D DIR
  criu page-server
  criu service [<options>]
  criu dedup
  criu lazy-pages -D DIR [<options>]
  criu crit decode|encode|info|x|show ...

Commands:
  dump           checkpoint a process/tree identified by pid
  pre-dump       pre-dump task(s) minimizing their frozen time (not supported yet)
  restore        restore a process/tree
  check          checks whether the kernel supports the features criu needs
  network-unlock lift the network lock a dump in DIR left (when its restore failed)
  page-server    launch page server (not supported yet)
  service        launch service (not supported yet; also swrk)
  lazy-pages     launch lazy-pages daemon (not supported yet)
  cpuinfo dump|check  CPU capability images (not supported yet)
  crit           inspect and convert images

Options are CRIU 4.x's, in the same short, long, --opt=value and --no-opt forms, and may
come before or after the command. A single-valued option given twice keeps its last value
(config files are read first, so the command line wins); list options append.
";

/// The whole help text.
pub fn text() -> String {
    let mut out = String::from(USAGE);
    type Pick = fn(&Class) -> bool;
    let groups: [(&str, Pick); 4] = [
        ("Options with their effect", |c| *c == Class::Honoured),
        (
            "Accepted, allowing resources that are refused anyway (the dump names them)",
            |c| *c == Class::Permission,
        ),
        (
            "Accepted, tuning CRIU internals only: no effect here",
            |c| matches!(c, Class::Internal(_)),
        ),
        (
            "Not supported yet: dump/restore fail with \"not supported yet: --OPTION\"",
            |c| matches!(c, Class::Unsupported { .. }),
        ),
    ];
    for (title, pick) in groups {
        let _ = writeln!(out, "\n{title}:");
        for spec in OPTIONS.iter().filter(|s| pick(&s.class)) {
            line(&mut out, spec);
        }
    }
    out
}

fn line(out: &mut String, s: &OptSpec) {
    let mut names = String::new();
    if let Some(c) = s.short {
        let _ = write!(names, "-{c}, ");
    }
    let _ = write!(names, "--{}", s.long);
    if s.negatable {
        let _ = write!(names, "[, --no-{}]", s.long);
    }
    match s.arg {
        HasArg::No => {}
        HasArg::Required => {
            let _ = write!(names, " {}", s.metavar);
        }
        HasArg::Optional => {
            let _ = write!(names, "[={}]", s.metavar);
        }
    }
    let mut help = s.help.to_string();
    if s.list {
        help.push_str(" (repeatable)");
    }
    match s.class {
        Class::Internal(why) | Class::Unsupported { why, .. } => {
            let _ = write!(help, " [{why}]");
        }
        _ => {}
    }
    let _ = writeln!(out, "  {names:<40} {help}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_listed_once() {
        let t = text();
        for s in OPTIONS {
            let needle = format!("--{}", s.long);
            let hits = t
                .match_indices(&needle)
                .filter(|(i, _)| {
                    let after = t[i + needle.len()..].chars().next();
                    let before = t[..*i].chars().last();
                    !matches!(after, Some('-' | 'a'..='z')) && before != Some('-')
                })
                .count();
            assert!(hits >= 1, "{needle} not in the help");
        }
        assert!(t.contains("--pre-dump-mode"));
        assert!(t.contains("Not supported yet"));
    }
}
