//! The command line: CRIU's commands and option names.
//!
//! CRIU parses options with getopt_long over the whole argument list, so options may stand
//! before or after the command; we do the same by taking the command as the first
//! positional argument. Verbosity (`-v`, `-vvv`, `-v4`, `--verbosity[=N]`) is taken out of the
//! argument list before clap sees it, since its forms do not fit clap's model.

use std::path::PathBuf;

use clap::Parser;

/// CRIU's default verbosity: errors and warnings.
pub const DEFAULT_VERBOSITY: u8 = 2;

/// Everything the command line and config files said.
#[derive(Debug, Parser)]
#[command(
    name = "criu",
    version,
    about = "Checkpoint/restore in userspace (CRIU-compatible, written in Rust)",
    disable_version_flag = true
)]
pub struct Cli {
    /// dump, pre-dump, restore, check, page-server, lazy-pages, cpuinfo, swrk, crit
    pub command: Option<String>,

    /// Arguments of the command (e.g. the fd of `swrk`, the action of `cpuinfo`).
    #[arg(allow_hyphen_values = false)]
    pub command_args: Vec<String>,

    #[command(flatten)]
    pub opts: Options,

    /// Print program version and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
}

/// The options, named as CRIU names them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    /// Checkpoint the whole process tree starting from PID.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    pub tree: Option<i32>,

    /// Directory of the image files.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub images_dir: Option<PathBuf>,

    /// Directory for logs, pidfiles and statistics (default: the images dir).
    #[arg(short = 'W', long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Write log messages to FILE (relative to the work dir).
    #[arg(short = 'o', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Allow dumping/restoring shell jobs (the tree shares criu's terminal).
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,

    /// Detach criu once restore is complete.
    #[arg(short = 'd', long = "restore-detached")]
    pub restore_detached: bool,

    /// Leave tasks stopped after dump or restore.
    #[arg(short = 's', long = "leave-stopped")]
    pub leave_stopped: bool,

    /// Restore: check the pages against criu-rs-pages-digest.bin before resuming the tree.
    #[arg(long = "verify-pages")]
    pub verify_pages: bool,

    /// Leave tasks running after dump.
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,

    /// Write the root task's (or service's) pid into FILE (relative to the work dir).
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Directory of plugins (repeatable). CRIU's name for it is -L/--libdir.
    #[arg(
        short = 'L',
        long = "plugin-dir",
        visible_alias = "libdir",
        value_name = "DIR"
    )]
    pub plugin_dir: Vec<PathBuf>,

    /// Read options from FILE after the default config files.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Do not read the default config files.
    #[arg(long = "no-default-config")]
    pub no_default_config: bool,

    /// Maximum size of a deleted file carried inside the images (K, M, G suffixes).
    #[arg(long = "ghost-limit", value_name = "SIZE", value_parser = parse_size)]
    pub ghost_limit: Option<u64>,

    /// Print dump/restore statistics at the end.
    #[arg(long = "display-stats")]
    pub display_stats: bool,

    /// `check`: check only this feature (repeatable).
    #[arg(long = "feature", value_name = "NAME")]
    pub feature: Vec<String>,

    /// `check`: check every feature, including the ones not required.
    #[arg(long = "all")]
    pub all: bool,

    /// `check`: list the plugins, built-in or loaded.
    #[arg(long = "plugins")]
    pub plugins: bool,

    /// Seconds to wait for the tree to freeze (accepted as CRIU does).
    #[arg(long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<u32>,

    /// Close this fd before doing anything (repeatable).
    #[arg(long = "close", value_name = "FD")]
    pub close: Vec<i32>,

    /// Verbosity level, filled from the -v forms before parsing.
    #[arg(skip = DEFAULT_VERBOSITY)]
    pub verbosity: u8,
}

/// Parses CRIU's size syntax: a number with an optional K, M or G suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (a number with K, M or G)"))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

/// Takes the verbosity forms out of `argv` and returns the level they set.
///
/// `-v` and `-vv...` raise the level by one per `v`; `-vN` and `--verbosity=N` set it;
/// `--verbosity` alone raises it by one, as in CRIU.
pub fn extract_verbosity(argv: Vec<String>) -> Result<(Vec<String>, u8), String> {
    let mut level = DEFAULT_VERBOSITY;
    let mut rest = Vec::with_capacity(argv.len());
    let mut only_positionals = false;
    for arg in argv {
        if only_positionals {
            rest.push(arg);
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            rest.push(arg);
        } else if arg == "--verbosity" {
            level = level.saturating_add(1);
        } else if let Some(n) = arg.strip_prefix("--verbosity=") {
            level = parse_level(n)?;
        } else if let Some(tail) = arg.strip_prefix("-v").filter(|_| !arg.starts_with("--")) {
            if tail.chars().all(|c| c == 'v') {
                level = level.saturating_add(1 + tail.len() as u8);
            } else if tail.chars().all(|c| c.is_ascii_digit()) {
                level = parse_level(tail)?;
            } else {
                rest.push(arg);
            }
        } else {
            rest.push(arg);
        }
    }
    Ok((rest, level))
}

fn parse_level(text: &str) -> Result<u8, String> {
    text.parse::<u8>()
        .map_err(|_| format!("bad verbosity level '{text}': expected a number from 0 to 4"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn verbosity_forms() {
        assert_eq!(extract_verbosity(argv("criu dump")).unwrap().1, 2);
        assert_eq!(extract_verbosity(argv("criu -v dump")).unwrap().1, 3);
        assert_eq!(extract_verbosity(argv("criu -vvv dump")).unwrap().1, 5);
        assert_eq!(extract_verbosity(argv("criu dump -v0")).unwrap().1, 0);
        assert_eq!(extract_verbosity(argv("criu dump -v4")).unwrap().1, 4);
        assert_eq!(
            extract_verbosity(argv("criu --verbosity=1 x")).unwrap().1,
            1
        );
        assert_eq!(extract_verbosity(argv("criu --verbosity x")).unwrap().1, 3);
        let (rest, _) = extract_verbosity(argv("criu dump -v4 -t 5")).unwrap();
        assert_eq!(rest, argv("criu dump -t 5"));
        assert!(extract_verbosity(argv("criu -v9999")).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10").unwrap(), 10);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("3G").unwrap(), 3 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn zdtm_dump_line_parses() {
        let line = "criu dump --no-default-config --log-file dump.log --images-dir /tmp/d \
                    --tree 42 --pidfile p --timeout 10";
        let cli = Cli::try_parse_from(argv(line)).unwrap();
        assert_eq!(cli.command.as_deref(), Some("dump"));
        assert_eq!(cli.opts.tree, Some(42));
        assert!(cli.opts.no_default_config);
        assert_eq!(cli.opts.log_file, Some(PathBuf::from("dump.log")));
    }

    #[test]
    fn libdir_alias() {
        let cli = Cli::try_parse_from(argv("criu check --libdir /a -L /b")).unwrap();
        assert_eq!(
            cli.opts.plugin_dir,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }
}
