//! Terminal settings between the kernel's structs and CRIU's entries.

use criu_plugin_api::PluginError;
use criu_proto::images::{TermiosEntry, WinsizeEntry};

use crate::ioctl::zeroed_termios;

/// Control characters CRIU stores: the kernel's `NCCS` (19), not glibc's 32.
pub(crate) const TERMIOS_NCC: usize = 19;

/// A `termios_entry` of `t`. Like CRIU, the speeds are not stored (they live in `c_cflag`).
pub(crate) fn termios_entry(t: &libc::termios) -> TermiosEntry {
    TermiosEntry {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: u32::from(t.c_line),
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: t.c_cc[..TERMIOS_NCC]
            .iter()
            .map(|&c| u32::from(c))
            .collect(),
    }
}

/// The termios of an entry; `image` names the image in errors. Fewer than 19 control
/// characters, or values that are not bytes, mean a corrupt image (CRIU's `verify_termios`).
pub(crate) fn termios_of(
    e: &TermiosEntry,
    image: &str,
    id: u32,
) -> Result<libc::termios, PluginError> {
    if e.c_cc.len() < TERMIOS_NCC {
        return Err(PluginError::bad_image(
            image,
            format!(
                "tty {id:#x}: {} control characters, {TERMIOS_NCC} expected",
                e.c_cc.len()
            ),
        ));
    }
    let byte = |v: u32, what: &str| {
        u8::try_from(v).map_err(|_| {
            PluginError::bad_image(image, format!("tty {id:#x}: {what} {v} is not a byte"))
        })
    };
    let mut t = zeroed_termios();
    t.c_iflag = e.c_iflag;
    t.c_oflag = e.c_oflag;
    t.c_cflag = e.c_cflag;
    t.c_lflag = e.c_lflag;
    t.c_line = byte(e.c_line, "c_line")?;
    for (dst, &src) in t.c_cc.iter_mut().zip(e.c_cc.iter().take(TERMIOS_NCC)) {
        *dst = byte(src, "control character")?;
    }
    Ok(t)
}

/// A `winsize_entry` of `w`.
pub(crate) fn winsize_entry(w: &libc::winsize) -> WinsizeEntry {
    WinsizeEntry {
        ws_row: u32::from(w.ws_row),
        ws_col: u32::from(w.ws_col),
        ws_xpixel: u32::from(w.ws_xpixel),
        ws_ypixel: u32::from(w.ws_ypixel),
    }
}

/// The winsize of an entry (values beyond 16 bits are a corrupt image).
pub(crate) fn winsize_of(
    e: &WinsizeEntry,
    image: &str,
    id: u32,
) -> Result<libc::winsize, PluginError> {
    let short = |v: u32| {
        u16::try_from(v).map_err(|_| {
            PluginError::bad_image(
                image,
                format!("tty {id:#x}: window size value {v} too large"),
            )
        })
    };
    Ok(libc::winsize {
        ws_row: short(e.ws_row)?,
        ws_col: short(e.ws_col)?,
        ws_xpixel: short(e.ws_xpixel)?,
        ws_ypixel: short(e.ws_ypixel)?,
    })
}
