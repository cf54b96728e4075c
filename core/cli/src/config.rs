//! CRIU's configuration files.
//!
//! A config file holds one option per line, written as on the command line but without the
//! leading dashes (`tcp-established`, `log-file /tmp/x.log`); `#` starts a comment; a value may
//! be double-quoted. CRIU reads `/etc/criu/default.conf`, then `$HOME/.criu/default.conf`,
//! then the file named by `CRIU_CONFIG_FILE`, then `--config FILE`, and finally the command
//! line, later sources overriding earlier ones (the last value of an option wins, list
//! options append). `--no-default-config` on the command line skips the two default files
//! (inside a file it is ignored, as in CRIU).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The default files, in the order CRIU reads them.
pub fn default_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/criu/default.conf")];
    if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".criu/default.conf"));
    }
    files
}

/// Builds the argument list criu parses: program name, the options of every config file
/// that applies, then the user's own arguments (which thus win).
pub fn merged_argv(user_argv: Vec<String>) -> Result<Vec<String>> {
    let mut args = user_argv.into_iter();
    let program = args.next().unwrap_or_else(|| "criu".to_string());
    let user: Vec<String> = args.collect();

    let mut files = Vec::new();
    if !user.iter().any(|a| a == "--no-default-config") {
        files.extend(default_files().into_iter().filter(|p| p.exists()));
    }
    if let Some(env_file) = std::env::var_os("CRIU_CONFIG_FILE") {
        files.push(PathBuf::from(env_file));
    }
    if let Some(explicit) = explicit_config(&user)? {
        files.push(explicit);
    }

    let mut merged = vec![program];
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read config file {}", file.display()))?;
        let tokens = parse(&text).with_context(|| format!("in config file {}", file.display()))?;
        merged.extend(tokens);
    }
    merged.extend(user);
    Ok(merged)
}

fn explicit_config(user: &[String]) -> Result<Option<PathBuf>> {
    // As getopt: the last --config wins; `--` ends the options.
    let mut found = None;
    let mut iter = user.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        if let Some(v) = arg.strip_prefix("--config=") {
            found = Some(PathBuf::from(v));
        } else if arg == "--config" {
            let Some(v) = iter.next() else {
                bail!("--config needs a file name")
            };
            found = Some(PathBuf::from(v));
        }
    }
    Ok(found)
}

/// Turns the text of a config file into command-line tokens.
pub fn parse(text: &str) -> Result<Vec<String>> {
    let mut tokens = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = match line.split_once(char::is_whitespace) {
            Some((n, v)) => (n, Some(v.trim())),
            None => (line, None),
        };
        if name.starts_with('-') {
            bail!(
                "line {}: write '{}' without leading dashes",
                number + 1,
                name
            );
        }
        // CRIU ignores both inside a file; a nested config would never be read, so say so.
        if name == "no-default-config" {
            continue;
        }
        if name == "config" {
            bail!(
                "line {}: '{}' is not allowed inside a config file",
                number + 1,
                name
            );
        }
        // One `--name=value` word: an optional argument (`verbosity 4`) is then taken too,
        // and a value given to a flag is an error instead of a stray command word.
        match value.filter(|v| !v.is_empty()) {
            Some(value) => {
                let value = unquote(value).with_context(|| format!("line {}", number + 1))?;
                tokens.push(format!("--{name}={value}"));
            }
            None => tokens.push(format!("--{name}")),
        }
    }
    Ok(tokens)
}

fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(value: &str) -> Result<String> {
    match value.strip_prefix('"') {
        Some(inner) => match inner.strip_suffix('"') {
            Some(body) => Ok(body.replace("\\\"", "\"")),
            None => bail!("unterminated quote in '{value}'"),
        },
        None => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_values_comments_quotes() {
        let text = "# a comment\ntcp-established\nlog-file /tmp/x.log  # trailing\n\n\
                    images-dir \"/tmp/a b\"\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                "--tcp-established",
                "--log-file=/tmp/x.log",
                "--images-dir=/tmp/a b"
            ]
        );
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(parse("--tree 5").is_err());
        assert!(parse("config /x").is_err());
        assert!(parse("no-default-config").unwrap().is_empty());
        assert!(parse("log-file \"/x").is_err());
    }

    #[test]
    fn explicit_config_forms() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            explicit_config(&a(&["--config", "/f"])).unwrap(),
            Some("/f".into())
        );
        assert_eq!(
            explicit_config(&a(&["--config=/g"])).unwrap(),
            Some("/g".into())
        );
        assert!(explicit_config(&a(&["--config"])).is_err());
        assert_eq!(
            explicit_config(&a(&["--config=/g", "--config", "/h", "--", "--config=/i"])).unwrap(),
            Some("/h".into())
        );
    }
}
