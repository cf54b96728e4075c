//! Unit tests: device classification, /proc parsing, entry conversion, and a real pty of
//! the test process dumped into memory images.

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdHandler, ImageCursor, ImageRef, Plugin, PluginError, builtin_plugins};
use criu_proto::images::{FdTypes, FileEntry, TermiosEntry, TtyInfoEntry, TtyType, WinsizeEntry};
use nix::sys::stat::makedev;
use prost::Message;

use crate::entries::{TERMIOS_NCC, termios_entry, termios_of, winsize_entry, winsize_of};
use crate::kind::{Driver, info_id, proc_tty_nr, slave_index};
use crate::session::{parse_stat, parse_tracer};
use crate::{TTY_INFO, TtyPlugin};

mod queued;
mod restore;

#[test]
fn drivers_by_device_number() {
    assert_eq!(Driver::of(makedev(136, 3)), Some(Driver::PtySlave));
    assert_eq!(Driver::of(makedev(143, 255)), Some(Driver::PtySlave));
    assert_eq!(Driver::of(makedev(5, 2)), Some(Driver::PtyMaster));
    assert_eq!(Driver::of(makedev(128, 0)), Some(Driver::PtyMaster));
    assert_eq!(Driver::of(makedev(5, 0)), Some(Driver::Ctty));
    assert_eq!(Driver::of(makedev(5, 1)), Some(Driver::Console));
    assert_eq!(Driver::of(makedev(4, 1)), Some(Driver::Vt));
    assert_eq!(Driver::of(makedev(4, 63)), Some(Driver::Vt));
    // 8250 serial ports, BSD ptys, /dev/null: not ours.
    assert_eq!(Driver::of(makedev(4, 64)), None);
    assert_eq!(Driver::of(makedev(2, 0)), None);
    assert_eq!(Driver::of(makedev(1, 3)), None);
    assert_eq!(Driver::of(makedev(188, 0)), Some(Driver::Serial));
}

#[test]
fn ids_and_indices_as_criu() {
    assert_eq!(slave_index(makedev(136, 7)), 7);
    assert_eq!(slave_index(makedev(137, 2)), 258);
    // tty_gen_id: index << 1, master odd.
    assert_eq!(info_id(Driver::PtySlave, 7), 14);
    assert_eq!(info_id(Driver::PtyMaster, 7), 15);
    assert_eq!(info_id(Driver::Ctty, Driver::Ctty.fixed_index()), 2012);
    assert_eq!(
        info_id(Driver::Console, Driver::Console.fixed_index()),
        2004
    );
    assert_eq!(Driver::Vt.tty_type(), TtyType::Vt);
    // new_encode_dev, as /proc/PID/stat shows tty_nr: pts/3 is 34819.
    assert_eq!(proc_tty_nr(makedev(136, 3)), 34819);
    assert_eq!(
        proc_tty_nr(makedev(136, 300)),
        (300 & 0xff) | (136 << 8) | (256 << 12)
    );
}

#[test]
fn stat_parsing_tolerates_odd_names() {
    let text = "4242 (we ird) (x) S 1 4240 4200 34819 4240 4194560 0 0";
    let t = parse_stat(text).expect("parsed");
    assert_eq!(
        (t.pgrp, t.sid, t.tty_nr, t.tpgid),
        (4240, 4200, 34819, 4240)
    );
    let none = parse_stat("7 (a) S 1 7 7 0 -1 0").expect("parsed");
    assert_eq!((none.tty_nr, none.tpgid), (0, -1));
    assert!(parse_stat("7 (a) S 1").is_none());
    assert!(parse_stat("garbage").is_none());
    assert!(parse_stat("7 (a) S 1 7 x 0 -1").is_none());
    assert_eq!(parse_tracer("Name:\ta\nTracerPid:\t  123\n"), Some(123));
    assert_eq!(parse_tracer("Name:\ta\n"), None);
}

fn sample_termios() -> TermiosEntry {
    TermiosEntry {
        c_iflag: 0o2400,
        c_oflag: 5,
        c_cflag: 0o277,
        c_lflag: 0o105073,
        c_line: 0,
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: (0..TERMIOS_NCC as u32).map(|i| i * 3).collect(),
    }
}

#[test]
fn termios_round_trip_and_corruption() {
    let e = sample_termios();
    let t = termios_of(&e, "tty-info.img", 1).expect("valid");
    assert_eq!(termios_entry(&t), e);
    assert_eq!(t.c_cc[TERMIOS_NCC], 0, "beyond the kernel's 19 stays zero");

    let short = TermiosEntry {
        c_cc: vec![1; 5],
        ..sample_termios()
    };
    let err = termios_of(&short, "tty-info.img", 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tty-info.img") && err.contains("5 control"),
        "{err}"
    );
    let big = TermiosEntry {
        c_line: 300,
        ..sample_termios()
    };
    assert!(termios_of(&big, "tty-info.img", 3).is_err());

    let w = WinsizeEntry {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 1,
        ws_ypixel: 2,
    };
    assert_eq!(winsize_entry(&winsize_of(&w, "x", 1).expect("valid")), w);
    let huge = WinsizeEntry { ws_row: 70000, ..w };
    assert!(winsize_of(&huge, "x", 1).is_err());
}

#[test]
fn registered_before_files() {
    let names: Vec<_> = builtin_plugins().iter().map(|p| p.info().name).collect();
    assert!(names.contains(&"tty"), "{names:?}");
    assert!(crate::PLUGIN.info().priority < 200);
}

/// A pty pair of the test process, with a distinctive window size; both ends close-on-exec.
pub(crate) fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let r = nix::pty::openpty(Some(&ws), None).expect("openpty");
    for fd in [&r.master, &r.slave] {
        nix::fcntl::fcntl(
            fd.as_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .expect("cloexec");
    }
    (r.master, r.slave)
}

pub(crate) fn messages<M: Message + Default>(images: &MemoryImages, image: ImageRef) -> Vec<M> {
    let Some(body) = images.image(image) else {
        return Vec::new();
    };
    let mut c = ImageCursor::new(image, body);
    let mut out = Vec::new();
    while let Some(m) = c.next_entry::<M>().expect("entry") {
        out.push(m);
    }
    out
}

pub(crate) fn dump_slave(
    images: &mut MemoryImages,
    slave: &OwnedFd,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let desc = own_fd_desc(slave.as_fd()).expect("describe fd");
    assert!(TtyPlugin.claims(&desc), "not claimed: {}", desc.link);
    TtyPlugin.dump_file(images, &desc, id)
}

#[test]
fn pty_slave_needs_shell_job() {
    let (_master, slave) = pty(33, 101);
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let err = dump_slave(&mut images, &slave, 1).unwrap_err().to_string();
    assert!(err.contains("--shell-job"), "{err}");
    assert!(err.contains("/dev/pts/"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(
        images.image(TTY_INFO).is_none(),
        "nothing written on refusal"
    );
}

#[test]
fn pty_slave_dumped_with_shell_job() {
    let (master, slave) = pty(33, 101);
    let mut t = nix::sys::termios::tcgetattr(slave.as_fd()).expect("tcgetattr");
    t.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
    t.control_chars[libc::VINTR] = 7;
    nix::sys::termios::tcsetattr(slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
        .expect("tcsetattr");
    let index = crate::ioctl::pty_index(master.as_fd()).expect("TIOCGPTN");

    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    images.dump_options.shell_job = true;
    let e1 = dump_slave(&mut images, &slave, 1).expect("dump");
    let dup = slave.try_clone().expect("dup");
    let e2 = dump_slave(&mut images, &dup, 2).expect("dump again");

    assert_eq!(e1.r#type, FdTypes::Tty as i32);
    let tfe = e1.tty.as_ref().expect("tty member");
    assert_eq!(tfe.tty_info_id, index << 1);
    assert_eq!(tfe.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
    assert_eq!(e2.tty.as_ref().expect("tty").tty_info_id, tfe.tty_info_id);

    // One tty-info entry for both descriptions of the terminal.
    let infos: Vec<TtyInfoEntry> = messages(&images, TTY_INFO);
    assert_eq!(infos.len(), 1, "{infos:?}");
    let info = &infos[0];
    assert_eq!(info.id, index << 1);
    assert_eq!(info.r#type, TtyType::Pty as i32);
    assert_eq!(info.pty.as_ref().map(|p| p.index), Some(index));
    assert_eq!(
        (info.sid, info.pgrp),
        (0, 0),
        "not our controlling terminal"
    );
    let ws = info.winsize.as_ref().expect("winsize");
    assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
    let te = info.termios.as_ref().expect("termios");
    assert_eq!(te.c_cc.len(), TERMIOS_NCC);
    assert_eq!(te.c_cc[libc::VINTR], 7);
    assert_eq!(te.c_lflag & libc::ECHO, 0);
    assert!(info.termios_locked.is_some());

    // The REG entries hold the path, under fresh ids.
    let files: Vec<FileEntry> = messages(&images, ImageRef::FILES);
    assert_eq!(files.len(), 2);
    let reg = files[0].reg.as_ref().expect("reg");
    assert_eq!(reg.name, format!("/dev/pts/{index}"));
    assert_eq!(Some(files[0].id), tfe.regf_id);
}

#[test]
fn second_shell_terminal_refused() {
    let (_m1, s1) = pty(10, 10);
    let (_m2, s2) = pty(10, 10);
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    images.dump_options.shell_job = true;
    dump_slave(&mut images, &s1, 1).expect("first");
    let err = dump_slave(&mut images, &s2, 2).unwrap_err().to_string();
    assert!(err.contains("second terminal"), "{err}");
}

/// A pair of this process (its master in the "tree"): both ends dumped with one index, the
/// data queued both ways carried in tty-data.img and still readable afterwards.
#[test]
fn pty_pair_dumped_with_queued_data_left_in_place() {
    use criu_plugin_api::{DumpStage, StageHooks};
    let (master, slave) = pty(10, 10);
    let mut t = nix::sys::termios::tcgetattr(slave.as_fd()).expect("tcgetattr");
    t.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
    nix::sys::termios::tcsetattr(slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
        .expect("tcsetattr");
    let index = crate::ioctl::pty_index(master.as_fd()).expect("TIOCGPTN");
    nix::unistd::write(&master, b"down\n").expect("write master");
    nix::unistd::write(&slave, b"up\n").expect("write slave");
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let me = std::process::id() as i32;
    images.tasks = vec![criu_plugin_api::TaskIds {
        pid: me,
        tids: vec![me],
    }];
    let mdesc = own_fd_desc(master.as_fd()).expect("describe");
    let m = TtyPlugin.dump_file(&mut images, &mdesc, 1).expect("master");
    assert_eq!(m.tty.unwrap().tty_info_id, index << 1 | 1);
    let s = dump_slave(&mut images, &slave, 2).expect("slave of a master in the tree");
    assert_eq!(s.tty.unwrap().tty_info_id, index << 1);
    TtyPlugin
        .dump_stage(DumpStage::AfterDump, &mut images)
        .expect("queued data");
    let mut data: Vec<(u32, Vec<u8>)> =
        messages::<criu_proto::images::TtyDataEntry>(&images, crate::TTY_DATA)
            .into_iter()
            .map(|d| (d.tty_id, d.data))
            .collect();
    data.sort();
    assert_eq!(
        data,
        [
            (index << 1, b"down\n".to_vec()),
            (index << 1 | 1, b"up\r\n".to_vec())
        ]
    );
    // Written back: each end still reads it, once.
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&slave, &mut buf).expect("read slave");
    assert_eq!(&buf[..n], b"down\n");
    let n = nix::unistd::read(&master, &mut buf).expect("read master");
    assert_eq!(&buf[..n], b"up\r\n");
    assert_eq!(
        crate::pairs::parse_tty_index(&mdesc.fdinfo.raw),
        Some(index)
    );
}

/// A slave whose master was closed (hung up) is dumped without `--shell-job`: it comes back
/// hung up, behind a master criu closes again; its entry has no settings (the kernel gives
/// none).
#[test]
fn hung_up_slave_dumped_without_shell_job() {
    let (master, slave) = pty(10, 10);
    let index = crate::ioctl::pty_index(master.as_fd()).expect("TIOCGPTN");
    drop(master);
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let e = dump_slave(&mut images, &slave, 1).expect("hung-up slave");
    assert_eq!(e.tty.unwrap().tty_info_id, index << 1);
    let infos: Vec<TtyInfoEntry> = messages(&images, TTY_INFO);
    assert_eq!(infos.len(), 1);
    assert!(infos[0].termios.is_none(), "{:?}", infos[0]);
}
