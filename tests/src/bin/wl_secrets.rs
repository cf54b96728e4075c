//! A workload holding secrets everywhere an image could leak them, for the `anonymise` test.
//! Every secret contains `zqsecret`: its comm, a directory and a file it holds open and is
//! in (cwd), an unlinked file with contents (a ghost), a pipe and a unix socket pair with
//! queued data, a unix socket bound to a path and one to an abstract name, and heap memory.
//! It leads its own session. Report line: `ready <pid>`; then it sleeps until killed.
//! Usage: wl_secrets REPORT_FILE WORKDIR

use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;

fn main() {
    let mut args = std::env::args().skip(1);
    let (report, work) = match (args.next(), args.next()) {
        (Some(r), Some(w)) => (r, w),
        _ => panic!("usage: wl_secrets REPORT_FILE WORKDIR"),
    };
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_name(c"zqsecretcomm").expect("PR_SET_NAME");

    let dir = Path::new(&work).join("zqsecretdir");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut open = std::fs::File::create(dir.join("zqsecretfile")).expect("create file");
    open.write_all(b"zqsecretfiledata").expect("write file");
    let ghost_path = dir.join("zqsecretghost");
    let mut ghost = std::fs::File::create(&ghost_path).expect("create ghost");
    ghost.write_all(b"zqsecretghostdata").expect("write ghost");
    std::fs::remove_file(&ghost_path).expect("unlink ghost");
    std::env::set_current_dir(&dir).expect("chdir");

    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    nix::unistd::write(&wr, b"zqsecretpipedata").expect("write pipe");
    let (a, b) = UnixDatagram::pair().expect("socketpair");
    a.send(b"zqsecretsockdata").expect("send");
    let bound = UnixListener::bind(dir.join("zqsecretsock")).expect("bind path");
    let abs = std::os::unix::net::SocketAddr::from_abstract_name(b"zqsecretabstract")
        .expect("abstract name");
    let abstract_sk = UnixListener::bind_addr(&abs).expect("bind abstract");

    let memory: Vec<u8> = b"zqsecretmemory.".repeat(10_000);

    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("report file");
    writeln!(out, "ready {}", std::process::id()).expect("report");
    drop(out);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        // Keep everything alive (and the memory in use) until killed.
        std::hint::black_box((
            &open,
            &ghost,
            &rd,
            &wr,
            &a,
            &b,
            &bound,
            &abstract_sk,
            &memory,
        ));
    }
}
