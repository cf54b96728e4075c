//! `crit`: CRIU's image tool (decode, encode, info, x, show), compatible with pycriu's CLI
//! and output format, and `anonymise` (ours: CRIU 4.2's crit has no such command).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use criu_core::image::{ImageDir, anon, inspect};
use criu_proto::FramingError;
use criu_proto::json::{self, DecodeOptions, JsonError};
use serde_json::Value;

/// crit's subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CritCommand {
    /// convert criu image from binary type to json
    Decode {
        /// Multiline with indents and some numerical fields in field-specific format
        #[arg(long)]
        pretty: bool,
        /// criu image in binary format to be decoded (stdin by default)
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// where to put criu image in json format (stdout by default)
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// convert criu image from json type to binary
    Encode {
        /// criu image in json format to be encoded (stdin by default)
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// where to put criu image in binary format (stdout by default)
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// show info about image
    Info {
        #[arg(value_name = "in")]
        input: PathBuf,
    },
    /// explore image dir
    X {
        dir: PathBuf,
        #[arg(value_enum)]
        what: XView,
    },
    /// convert criu image from binary to human-readable json
    Show {
        #[arg(value_name = "in")]
        input: PathBuf,
        /// do not show entry payload (if exists)
        #[arg(long)]
        nopl: bool,
    },
    /// copy an images directory without memory, data, registers and names, for a bug report
    #[command(visible_alias = "anonymize")]
    Anonymise {
        /// images directory to read
        #[arg(value_name = "in")]
        input: PathBuf,
        /// directory to write (created; must not exist or be empty)
        #[arg(value_name = "out")]
        output: PathBuf,
    },
}

/// The views of `crit x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XView {
    Ps,
    Fds,
    Mems,
    Rss,
}

/// Runs one crit command.
pub fn run(cmd: CritCommand) -> Result<()> {
    match cmd {
        CritCommand::Decode { pretty, input, out } => decode(
            input.as_deref(),
            out.as_deref(),
            DecodeOptions {
                pretty,
                no_payload: false,
            },
        ),
        CritCommand::Show { input, nopl } => decode(
            Some(&input),
            None,
            DecodeOptions {
                pretty: true,
                no_payload: nopl,
            },
        ),
        CritCommand::Encode { input, out } => encode(input.as_deref(), out.as_deref()),
        CritCommand::Info { input } => info(&input),
        CritCommand::X { dir, what } => explore(&dir, what),
        CritCommand::Anonymise { input, output } => anonymise(&input, &output),
    }
}

/// `crit anonymise IN OUT`: what was written and what was left out go to stderr.
fn anonymise(input: &Path, output: &Path) -> Result<()> {
    let r = anon::anonymise_dir(input, output).with_context(|| {
        format!(
            "cannot anonymise {} into {}",
            input.display(),
            output.display()
        )
    })?;
    eprintln!(
        "{}: {} images with names mapped and data removed, {} pages files zeroed, {} raw images left empty",
        output.display(),
        r.images.len(),
        r.pages.len(),
        r.emptied.len()
    );
    for (name, why) in &r.dropped {
        eprintln!("not copied: {name} ({why})");
    }
    Ok(())
}

fn read_input(input: Option<&Path>) -> Result<Vec<u8>> {
    match input {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read standard input")?;
            Ok(buf)
        }
    }
}

fn write_output(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        Some(p) => {
            std::fs::write(p, bytes).with_context(|| format!("cannot write {}", p.display()))
        }
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(bytes)
                .and_then(|()| so.flush())
                .context("cannot write standard output")
        }
    }
}

fn name_of(input: Option<&Path>) -> String {
    input.map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string())
}

fn decode(input: Option<&Path>, out: Option<&Path>, opts: DecodeOptions) -> Result<()> {
    let data = read_input(input)?;
    let text = decode_text(&data, opts, out.is_none())
        .with_context(|| format!("cannot decode {}", name_of(input)))?;
    write_output(out, text.as_bytes())
}

/// The JSON text crit prints for image bytes: indented by 4 with `pretty`, a trailing
/// newline only when going to standard output.
fn decode_text(data: &[u8], opts: DecodeOptions, to_stdout: bool) -> Result<String> {
    let doc = match json::decode(data, opts) {
        Ok(d) => d,
        Err(JsonError::Framing(FramingError::UnknownMagic { magic, .. })) => bail!(
            "Unknown magic {magic:#x}.\nMaybe you are feeding me an image with raw data(i.e. pages.img)?"
        ),
        Err(e) => return Err(e.into()),
    };
    let mut text = json::python_json(&doc, opts.pretty.then_some(4));
    if to_stdout {
        text.push('\n');
    }
    Ok(text)
}

fn encode(input: Option<&Path>, out: Option<&Path>) -> Result<()> {
    let data = read_input(input)?;
    let doc: Value = serde_json::from_slice(&data).with_context(|| {
        format!(
            "Cannot read JSON from {}.\nMaybe you are feeding me an image with protobuf data? \
             Encode expects JSON input.",
            name_of(input)
        )
    })?;
    let bytes = json::encode(&doc).with_context(|| format!("cannot encode {}", name_of(input)))?;
    write_output(out, &bytes)
}

fn info(input: &Path) -> Result<()> {
    let data = read_input(Some(input))?;
    let v = json::info(&data).with_context(|| format!("cannot read {}", input.display()))?;
    println!("{}", json::python_json(&v, Some(4)));
    Ok(())
}

fn explore(dir: &Path, what: XView) -> Result<()> {
    let out = explore_text(dir, what)?;
    write_output(None, out.as_bytes())
}

/// The text `crit x DIR WHAT` prints.
fn explore_text(dir: &Path, what: XView) -> Result<String> {
    let images = ImageDir::open(dir)?;
    let mut out = String::new();
    match what {
        XView::Ps => {
            let lines = inspect::ps(&images)?;
            out += &format!("{:>7}{:>7}{:>7}   {}\n", "PID", "PGID", "SID", "COMM");
            for l in lines {
                out += &format!(
                    "{:>7}{:>7}{:>7}   {}{}\n",
                    l.pid,
                    l.pgid,
                    l.sid,
                    " ".repeat(4 * l.depth),
                    l.comm
                );
            }
        }
        XView::Fds => {
            for t in inspect::fds(&images)? {
                out += &format!("{}\n", t.pid);
                for f in t.fds {
                    out += &format!("\t{:>7}: {}\n", f.fd, f.file);
                }
            }
        }
        XView::Mems => {
            for t in inspect::mems(&images)? {
                out += &format!("{}\n", t.pid);
                out += &format!("\t{:<36}    {}\n", "exe", t.exe);
                for v in t.vmas {
                    let range = format!("{:08x}-{:08x}", v.start, v.end);
                    out += &format!("\t{range:<36}{}{}\n", v.prot, v.desc);
                }
            }
        }
        XView::Rss => {
            for t in inspect::rss(&images)? {
                out += &format!("{}\n", t.pid);
                for r in t.runs {
                    let pstr = format!("\t{:x} / {:<8}", r.vaddr, r.nr_pages);
                    let mut vstr = String::new();
                    for v in r.vmas {
                        match v {
                            inspect::RssVma::Same => vstr += " ~",
                            inspect::RssVma::Vma { start, pages, file } => {
                                vstr += &format!(" {start:08x} / {pages:<8}");
                                if let Some(f) = file {
                                    vstr += &format!(" {f}");
                                }
                            }
                        }
                        vstr += &format!("\n\t{:23}", "");
                    }
                    out += &format!("{pstr:<24}{vstr}\n");
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Our text output equals Debian crit 3.17's, byte for byte, on the CRIU 4.2 fixtures
    //! whose schema did not change between the two (the others differ only as documented
    //! in `criu_proto::json::compat`).

    use std::process::Command;

    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/criu-4.2-sample")
    }

    fn system_crit() -> Option<PathBuf> {
        let found = std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("crit"))
            .find(|p| p.is_file());
        if found.is_none() {
            assert!(std::env::var_os("CI").is_none(), "crit missing under CI");
            eprintln!("skipping: no crit on PATH (apt-get install -y criu)");
        }
        found
    }

    fn crit_out(crit: &Path, args: &[&str]) -> String {
        let out = Command::new(crit).args(args).output().expect("run crit");
        assert!(
            out.status.success(),
            "crit {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn decode_text_matches_crit() {
        let Some(crit) = system_crit() else { return };
        let same_schema = [
            "fdinfo-2.img",
            "files.img",
            "fs-32679.img",
            "ids-32679.img",
            "mm-32679.img",
            "pipes-data.img",
            "pstree.img",
            "seccomp.img",
            "timens-0.img",
            "stats-dump",
        ];
        for name in same_schema {
            let path = fixtures().join(name);
            let data = std::fs::read(&path).unwrap();
            let p = path.to_str().unwrap();
            for pretty in [false, true] {
                let opts = DecodeOptions {
                    pretty,
                    no_payload: false,
                };
                let ours = decode_text(&data, opts, true).unwrap();
                let mut args = vec!["decode", "-i", p];
                if pretty {
                    args.push("--pretty");
                }
                assert_eq!(ours, crit_out(&crit, &args), "{name} pretty={pretty}");
            }
            let ours = decode_text(
                &data,
                DecodeOptions {
                    pretty: true,
                    no_payload: true,
                },
                true,
            )
            .unwrap();
            assert_eq!(
                ours,
                crit_out(&crit, &["show", p, "--nopl"]),
                "{name} show --nopl"
            );
        }
    }

    #[test]
    fn explore_text_matches_crit() {
        let Some(crit) = system_crit() else { return };
        let dir = fixtures();
        let d = dir.to_str().unwrap();
        // rss differs: crit 3.17 reads pagemap's old 32-bit page count (0 in 4.2 images).
        for (what, arg) in [
            (XView::Ps, "ps"),
            (XView::Fds, "fds"),
            (XView::Mems, "mems"),
        ] {
            let ours = explore_text(&dir, what).unwrap();
            assert_eq!(ours, crit_out(&crit, &["x", d, arg]), "x {arg}");
        }
    }

    #[test]
    fn raw_pages_are_refused_like_crit() {
        let data = vec![0x48u8; 4096];
        let err = decode_text(&data, DecodeOptions::default(), true).unwrap_err();
        assert!(
            err.to_string().starts_with("Unknown magic 0x48484848."),
            "{err}"
        );
    }
}
