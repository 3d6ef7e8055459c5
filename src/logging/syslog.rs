//! `[log] syslog = true`: log lines as syslog datagrams on the local socket (`/dev/log`, or
//! `[log] syslog_socket`), so that a consumer that discards stderr (ssh-agent, a daemon)
//! still shows in the journal or syslog why `C_Initialize` failed. One datagram per record
//! in the local format the C library's syslog(3) sends: `<PRI>hsmux[PID]: message`,
//! facility user, severity from the level. std's `UnixDatagram` is all it takes.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

pub const DEFAULT_SOCKET: &str = "/dev/log";
/// syslog facility `user` (1), shifted as in the PRI field.
const FACILITY_USER: u8 = 1 << 3;

/// The PRI value of a record: facility user, severity by level.
pub fn priority(level: log::Level) -> u8 {
    FACILITY_USER
        + match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        }
}

/// An env_logger target: each record (formatted as `<PRI>hsmux[PID]: ...\n` by the
/// logger's format) is sent as one datagram, without its newline.
pub struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Syslog {
    pub fn connect(path: &Path) -> io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Syslog {
            socket,
            path: path.to_path_buf(),
        })
    }
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = buf.strip_suffix(b"\n").unwrap_or(buf);
        if self.socket.send(line).is_err() {
            // The daemon restarted (a new socket at the same path): connect again, once.
            if let Ok(again) = Syslog::connect(&self.path) {
                *self = again;
                let _ = self.socket.send(line);
            }
        }
        // A lost log line never fails the caller.
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
