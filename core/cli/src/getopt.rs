//! A getopt_long over CRIU's option table ([`crate::optable`]), with glibc's rules: short
//! options group (`-dj`), a required argument may be attached (`-t5`, `--tree=5`) or be the
//! next word, an optional one only attached (`-v4`, `--verbosity=4`); a long option may be
//! shortened to any unambiguous prefix; `no-NAME` is the off form of CRIU's boolean options;
//! words that are not options are collected (the command and its arguments) wherever they
//! stand, and `--` ends the options. Repetition is left to the caller, which sees every
//! occurrence in order (the last value wins or values append, as CRIU does per option).

use std::fmt;

use crate::optable::{HasArg, OPTIONS, OptSpec};

/// One word (or part of a word) of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An option: its spec, its argument, and whether it was the `--no-NAME` form.
    Opt {
        spec: &'static OptSpec,
        value: Option<String>,
        negated: bool,
    },
    /// A word that is not an option (the command, its arguments).
    Word(String),
}

/// A command line getopt would refuse (CRIU exits 1 after printing it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptError {
    Unknown(String),
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    MissingArg(String),
    UnexpectedArg(String),
}

impl fmt::Display for GetoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetoptError::Unknown(o) => write!(f, "unrecognized option '{o}'"),
            GetoptError::Ambiguous { given, candidates } => write!(
                f,
                "option '{given}' is ambiguous; possibilities: {}",
                candidates.join(" ")
            ),
            GetoptError::MissingArg(o) => write!(f, "option '{o}' requires an argument"),
            GetoptError::UnexpectedArg(o) => write!(f, "option '{o}' doesn't allow an argument"),
        }
    }
}

impl std::error::Error for GetoptError {}

/// Splits `args` (without the program name) into options and words.
pub fn parse(args: &[String]) -> Result<Vec<Item>, GetoptError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.extend(args[i..].iter().cloned().map(Item::Word));
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            out.push(long(body, args, &mut i)?);
        } else if arg.len() > 1 && arg.starts_with('-') {
            shorts(&arg[1..], args, &mut i, &mut out)?;
        } else {
            out.push(Item::Word(arg.clone()));
        }
    }
    Ok(out)
}

/// Every long name, with the spec and whether it is the `no-` form.
fn long_names() -> impl Iterator<Item = (String, &'static OptSpec, bool)> {
    OPTIONS.iter().flat_map(|s| {
        let no = s.negatable.then(|| (format!("no-{}", s.long), s, true));
        std::iter::once((s.long.to_string(), s, false)).chain(no)
    })
}

/// Finds a long option by exact name, else by unique prefix (as getopt_long).
fn find_long(name: &str) -> Result<(&'static OptSpec, bool), GetoptError> {
    let mut prefixed = Vec::new();
    for (n, spec, negated) in long_names() {
        if n == name {
            return Ok((spec, negated));
        }
        if n.starts_with(name) {
            prefixed.push((n, spec, negated));
        }
    }
    match prefixed.len() {
        0 => Err(GetoptError::Unknown(format!("--{name}"))),
        1 => Ok((prefixed[0].1, prefixed[0].2)),
        _ => Err(GetoptError::Ambiguous {
            given: format!("--{name}"),
            candidates: prefixed.into_iter().map(|p| format!("--{}", p.0)).collect(),
        }),
    }
}

fn long(body: &str, args: &[String], i: &mut usize) -> Result<Item, GetoptError> {
    let (name, attached) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (body, None),
    };
    let (spec, negated) = find_long(name)?;
    let shown = format!("--{}{}", if negated { "no-" } else { "" }, spec.long);
    let value = match (negated, spec.arg) {
        (true, _) | (false, HasArg::No) => {
            if attached.is_some() {
                return Err(GetoptError::UnexpectedArg(shown));
            }
            None
        }
        (false, HasArg::Optional) => attached,
        (false, HasArg::Required) => match attached {
            Some(v) => Some(v),
            None => {
                let v = args
                    .get(*i)
                    .cloned()
                    .ok_or(GetoptError::MissingArg(shown))?;
                *i += 1;
                Some(v)
            }
        },
    };
    Ok(Item::Opt {
        spec,
        value,
        negated,
    })
}

fn shorts(
    group: &str,
    args: &[String],
    i: &mut usize,
    out: &mut Vec<Item>,
) -> Result<(), GetoptError> {
    for (at, c) in group.char_indices() {
        let spec = OPTIONS
            .iter()
            .find(|s| s.short == Some(c))
            .ok_or_else(|| GetoptError::Unknown(format!("-{c}")))?;
        let rest = &group[at + c.len_utf8()..];
        let value = match spec.arg {
            HasArg::No => None,
            HasArg::Optional => (!rest.is_empty()).then(|| rest.to_string()),
            HasArg::Required if !rest.is_empty() => Some(rest.to_string()),
            HasArg::Required => {
                let v = args
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| GetoptError::MissingArg(format!("-{c}")))?;
                *i += 1;
                Some(v)
            }
        };
        let takes_rest = value.is_some();
        out.push(Item::Opt {
            spec,
            value,
            negated: false,
        });
        if takes_rest {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// `(long name, value, negated)` of each option, `("", word, false)` for words.
    fn flat(s: &str) -> Vec<(String, Option<String>, bool)> {
        parse(&words(s))
            .unwrap()
            .into_iter()
            .map(|it| match it {
                Item::Opt {
                    spec,
                    value,
                    negated,
                } => (spec.long.to_string(), value, negated),
                Item::Word(w) => (String::new(), Some(w), false),
            })
            .collect()
    }

    fn o(name: &str, v: Option<&str>, neg: bool) -> (String, Option<String>, bool) {
        (name.into(), v.map(String::from), neg)
    }

    #[test]
    fn short_groups_and_attached_values() {
        assert_eq!(
            flat("-dj -t5 -D /x dump -v4 -vvv -v"),
            vec![
                o("restore-detached", None, false),
                o("shell-job", None, false),
                o("tree", Some("5"), false),
                o("images-dir", Some("/x"), false),
                o("", Some("dump"), false),
                o("verbosity", Some("4"), false),
                o("verbosity", Some("vv"), false),
                o("verbosity", None, false),
            ]
        );
    }

    #[test]
    fn long_forms_prefixes_and_negation() {
        assert_eq!(
            flat("--tree=7 --images 7d --no-tcp-established --verbosity --verbosity=1"),
            vec![
                o("tree", Some("7"), false),
                o("images-dir", Some("7d"), false),
                o("tcp-established", None, true),
                o("verbosity", None, false),
                o("verbosity", Some("1"), false),
            ]
        );
        // An optional argument is never taken from the next word.
        assert_eq!(
            flat("--ext-unix-sk 5"),
            vec![o("ext-unix-sk", None, false), o("", Some("5"), false)]
        );
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(
            flat("restore --exec-cmd -- ls -l"),
            vec![
                o("", Some("restore"), false),
                o("exec-cmd", None, false),
                o("", Some("ls"), false),
                o("", Some("-l"), false),
            ]
        );
    }

    #[test]
    fn errors() {
        let e = |s: &str| parse(&words(s)).unwrap_err();
        assert_eq!(e("--bogus"), GetoptError::Unknown("--bogus".into()));
        assert_eq!(e("-Z"), GetoptError::Unknown("-Z".into()));
        assert_eq!(e("--tree"), GetoptError::MissingArg("--tree".into()));
        assert_eq!(e("-t"), GetoptError::MissingArg("-t".into()));
        assert_eq!(
            e("--leave-running=1"),
            GetoptError::UnexpectedArg("--leave-running".into())
        );
        assert_eq!(
            e("--no-shell-job=1"),
            GetoptError::UnexpectedArg("--no-shell-job".into())
        );
        assert!(matches!(e("--tcp"), GetoptError::Ambiguous { .. }));
        // Only CRIU's boolean options have a no- form.
        assert_eq!(e("--no-tree"), GetoptError::Unknown("--no-tree".into()));
    }
}
