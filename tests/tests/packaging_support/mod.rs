//! Building the `.deb` packages as plugins/PACKAGING.md says (cargo-deb, core-only `criu-rs`
//! and one package per plugin), unpacking them into a scratch root, and reading them back
//! (`dpkg-deb -c`/`-f`, PACKAGING.md's tables).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

/// The packages and where they were unpacked.
#[derive(Debug)]
pub struct Packages {
    /// `.deb` files by package name.
    pub debs: Vec<(String, PathBuf)>,
    /// Scratch root the packages were unpacked into (`dpkg-deb -x`).
    pub root: PathBuf,
}

impl Packages {
    /// The unpacked core-only `criu`.
    pub fn criu(&self) -> PathBuf {
        self.root.join("usr/sbin/criu")
    }

    /// The unpacked plugin directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.root.join("usr/lib/criu")
    }
}

/// One row of PACKAGING.md's subpackage table: (crate, package, .so file).
pub fn subpackage_table() -> Vec<(String, String, String)> {
    let md = std::fs::read_to_string(repo().join("plugins/PACKAGING.md")).expect("PACKAGING.md");
    md.lines()
        .filter_map(|l| {
            // | `plugins/x/so` (`criu-plugin-x-so`) | `criu-rs-plugin-x` | `libcriu_x.so` |
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let krate = cells.get(1)?.split("(`").nth(1)?.split("`)").next()?;
            let package = cells.get(2)?.trim_matches('`');
            let so = cells.get(3)?.trim_matches('`');
            (krate.starts_with("criu-plugin-") && krate.ends_with("-so"))
                .then(|| (krate.to_string(), package.to_string(), so.to_string()))
        })
        .collect()
}

/// PACKAGING.md's install layout: (path pattern, mode, package pattern); `<name>` stands
/// for each plugin.
pub fn layout_table() -> Vec<(String, u32, String)> {
    let md = std::fs::read_to_string(repo().join("plugins/PACKAGING.md")).expect("PACKAGING.md");
    md.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let path = cells.get(1)?.trim_matches('`');
            let mode = cells.get(2)?.trim_matches('`').split(' ').next()?;
            let package = cells.get(4)?.trim_matches('`');
            let mode = u32::from_str_radix(mode, 8).ok()?;
            (path.starts_with("/usr/") && !path.ends_with('/'))
                .then(|| (path.to_string(), mode, package.to_string()))
        })
        .collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{what}: {:.1} s", t.elapsed().as_secs_f64());
    out
}

fn have_cargo_deb(cargo: &str) -> bool {
    let ok = Command::new(cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-deb is missing in CI (.ci/run installs it)"
        );
        eprintln!("skipping: cargo-deb is not installed (cargo install cargo-deb --locked)");
    }
    ok
}

/// Builds the packages once per test run (None: no cargo-deb here).
pub fn packages() -> Option<&'static Packages> {
    static BUILT: OnceLock<Option<Packages>> = OnceLock::new();
    BUILT.get_or_init(build_packages).as_ref()
}

fn build_packages() -> Option<Packages> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !have_cargo_deb(&cargo) {
        return None;
    }
    // The plugin ABI tests' target dir: the plugin crates and their dependencies are built
    // there already. Not ours: the outer `cargo test` holds its lock, and a core-only build
    // would replace the default target/release/criu.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-examples");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging");
    let _ = std::fs::remove_dir_all(&work);
    let out_dir = work.join("debs");
    std::fs::create_dir_all(&out_dir).expect("mkdir debs");
    let manifest = repo().join("Cargo.toml");
    let cargo_cmd = || {
        let mut c = Command::new(&cargo);
        c.env("CARGO_TARGET_DIR", &target)
            .arg("--quiet")
            .current_dir(repo());
        c
    };
    let table = subpackage_table();
    // Every in-tree plugin with a `.so` crate (plugins/NAME/so), no more, no less.
    let in_tree = std::fs::read_dir(repo().join("plugins"))
        .expect("plugins dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().join("so/Cargo.toml").exists())
        })
        .count();
    assert_eq!(
        table.len(),
        in_tree,
        "PACKAGING.md lists every in-tree plugin: {table:?}"
    );
    // criu-rs: cargo-deb builds criu and crit itself, without default features (metadata).
    run_ok(
        cargo_cmd()
            .args([
                "deb",
                "--strip",
                "--fast",
                "-p",
                "criu-cli",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("-o")
            .arg(&out_dir),
        "cargo deb -p criu-cli (core-only build)",
    );
    let mut build = cargo_cmd();
    build
        .args(["build", "--release", "--manifest-path"])
        .arg(&manifest);
    for (krate, _, _) in &table {
        build.args(["-p", krate]);
    }
    run_ok(&mut build, "cargo build of the in-tree plugin .so");
    for (krate, _, _) in &table {
        run_ok(
            cargo_cmd()
                .args(["deb", "--strip", "--fast", "--no-build", "-p", krate])
                .arg("--manifest-path")
                .arg(&manifest)
                .arg("-o")
                .arg(&out_dir),
            &format!("cargo deb -p {krate}"),
        );
    }
    let mut debs = Vec::new();
    for e in std::fs::read_dir(&out_dir).expect("debs dir") {
        let path = e.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('_').next())
            .expect("NAME_VERSION_ARCH.deb")
            .to_string();
        debs.push((name, path));
    }
    debs.sort();
    let root = work.join("root");
    std::fs::create_dir_all(&root).expect("mkdir root");
    for (_, deb) in &debs {
        run_ok(
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root),
            "dpkg-deb -x",
        );
    }
    Some(Packages { debs, root })
}

/// `dpkg-deb -c` of `deb`: (mode bits, owner, path without the leading '.').
pub fn contents(deb: &Path) -> Vec<(u32, String, String)> {
    let out = run_ok(Command::new("dpkg-deb").arg("-c").arg(deb), "dpkg-deb -c");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "dpkg-deb -c line: {l}");
            (
                mode_bits(f[0]),
                f[1].to_string(),
                f[5].trim_start_matches('.').to_string(),
            )
        })
        .collect()
}

/// `-rwxr-xr-x` -> 0o755.
fn mode_bits(s: &str) -> u32 {
    s.chars()
        .skip(1)
        .take(9)
        .fold(0, |m, c| (m << 1) | u32::from(c != '-'))
}

pub fn field(deb: &Path, name: &str) -> String {
    let out = run_ok(
        Command::new("dpkg-deb").arg("-f").arg(deb).arg(name),
        "dpkg-deb -f",
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs the unpacked `criu` with `args` (no CRIU_LIBS_DIR from the environment).
pub fn criu(p: &Packages, args: &[&str]) -> Output {
    Command::new(p.criu())
        .args(args)
        .env_remove("CRIU_LIBS_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unpacked criu")
}
