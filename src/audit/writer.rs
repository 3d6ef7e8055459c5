//! The writer thread: takes batches of events from the bounded queue ([`super::queue`]),
//! renders each as one JSON line chained to the process's previous line (`prev` = SHA-256
//! of that line's bytes), and appends each batch with one `write` on an `O_APPEND`
//! descriptor, so that several processes can share one file without tearing each other's
//! lines. While lines keep coming it takes a batch every [`LINGER`]: a line waits in memory
//! that long at most (plus the time of the write before it), unless a caller waits for it.
//!
//! Rotation: before each batch (so at most once per [`LINGER`] under load) the path is checked; a file renamed away or deleted
//! (logrotate's `create`) is reopened, a file truncated under us (`copytruncate`) is
//! noticed by its size; either way the batch starts with an `audit.reopen` record that
//! continues the chain. A failed or short write (disk full, a file size limit) takes back
//! the bytes it left (no torn line), rolls the chain back to the last line on disk, counts
//! the lines lost, and the next batch that gets through starts with an `audit.lost` record.

use super::event::{field_num, field_str, Clock, Names};
use super::queue::{next_in_time, taken_lanes, Queue, Queued};
use super::{DROPPED, WRITE_ERRORS};
use crate::config::audit::AuditConfig;
use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long the writer lets events gather before it takes a batch, unless a caller waits
/// for its line (`on_failure = "refuse"`) or the queue passes half its length: the callers
/// queue without waking it, and one `write` takes them all. This bounds how long a line
/// sits in memory; `C_Finalize` and process exit take what is queued at once.
pub const LINGER: Duration = Duration::from_millis(10);
/// The largest batch buffer the writer keeps for the next batch (a busy process fills
/// about 0.5 MB per batch).
const KEPT_BUFFER: usize = 4 << 20;
/// How often a writer whose last write failed tries again without new events.
const RETRY: Duration = Duration::from_millis(500);
/// syslog priority: facility authpriv (10), severity info (6).
const SYSLOG_PRI: u32 = 10 * 8 + 6;
/// The `prev` of a chain's first line.
pub const ZERO_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A caller waiting for its line to be on disk (`on_failure = "refuse"`).
#[derive(Default)]
pub struct Ack {
    state: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Ack {
    pub fn set(&self, written: bool) {
        *self.state.lock() = Some(written);
        self.cv.notify_all();
    }

    /// Whether the line was written, waiting up to `limit` for the writer to say.
    pub fn wait(&self, limit: Duration) -> bool {
        let mut s = self.state.lock();
        if s.is_none() {
            self.cv.wait_for(&mut s, limit);
        }
        s.unwrap_or(false)
    }
}

/// The file, reopened when it is rotated.
struct Sink {
    path: PathBuf,
    file: Option<File>,
    dev: u64,
    ino: u64,
    /// The file's size after our last write (a smaller size means it was truncated).
    end: u64,
}

impl Sink {
    fn open(&mut self) -> io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)?;
        let m = f.metadata()?;
        (self.dev, self.ino, self.end) = (m.dev(), m.ino(), m.len());
        self.file = Some(f);
        Ok(())
    }

    /// Reopens a file that was renamed away or deleted and notices one truncated under
    /// us; says which, for the `audit.reopen` record.
    fn check_rotation(&mut self) -> io::Result<Option<&'static str>> {
        if self.file.is_none() {
            self.open()?;
            return Ok(None);
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == (self.dev, self.ino) => {
                if m.len() < self.end {
                    self.end = m.len();
                    Ok(Some("truncated"))
                } else {
                    Ok(None)
                }
            }
            _ => {
                self.file = None;
                self.open()?;
                Ok(Some("renamed"))
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the audit file is not open"))?;
        match f.write(bytes) {
            Ok(n) if n == bytes.len() => {
                self.end = f.metadata().map(|m| m.len()).unwrap_or(self.end + n as u64);
                Ok(())
            }
            Ok(n) => {
                untear(f, &bytes[..n]);
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "short write ({n} of {} bytes): disk full or file size limit",
                        bytes.len()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }
}

/// Takes back the `partial` bytes a short write left at the end of the file, if they are
/// still its last bytes (no other process appended after them), so that no torn line stays.
fn untear(f: &File, partial: &[u8]) {
    let Ok(size) = f.metadata().map(|m| m.len()) else {
        return;
    };
    let n = partial.len() as u64;
    if n == 0 || size < n {
        return;
    }
    let mut tail = vec![0; partial.len()];
    if f.read_exact_at(&mut tail, size - n).is_ok() && tail == partial {
        let _ = f.set_len(size - n);
    }
}

/// The process's chain: its id, the next line's number and the hash of its last line.
#[derive(Clone)]
struct Chain {
    seq: u64,
    /// Lowercase hex.
    prev: [u8; 64],
}

impl Chain {
    fn prev(&self) -> &str {
        std::str::from_utf8(&self.prev).unwrap_or(ZERO_PREV)
    }
}

pub struct Writer {
    sink: Sink,
    chain: Chain,
    names: Arc<Names>,
    /// The process fields, rendered once.
    process: String,
    /// What follows a line's time up to its `seq`: `","chain":"<id>","seq":`.
    chain_json: String,
    /// Lines not written since the last successful write.
    lost: u64,
    /// `DROPPED` as the last `audit.dropped` record written told it.
    dropped_seen: u64,
    /// `DROPPED` as the batch being written tells it.
    dropped_told: u64,
    failed: Arc<AtomicBool>,
    syslog: Option<(UnixDatagram, PathBuf)>,
    level: &'static str,
    /// Whether the chain's start record is in the file.
    started: bool,
    /// Whether to let a batch gather ([`LINGER`]).
    linger: bool,
    clock: Clock,
    /// The lines of a batch, kept from batch to batch for its capacity: no large
    /// allocation (and no page faults on fresh memory) per batch.
    buf: String,
}

impl Writer {
    /// Opens the file and writes the chain's start record, on the caller's thread (so
    /// that `C_Initialize` can refuse to start without a trail).
    pub fn open(
        cfg: &AuditConfig,
        names: Arc<Names>,
        failed: Arc<AtomicBool>,
    ) -> (Writer, io::Result<()>) {
        let mut id = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut id);
        let syslog = cfg.syslog.then(|| {
            let path = cfg
                .syslog_socket
                .clone()
                .unwrap_or_else(|| PathBuf::from("/dev/log"));
            UnixDatagram::unbound().map(|s| (s, path))
        });
        let syslog = match syslog {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                log::error!("audit: no syslog socket: {e}");
                None
            }
            None => None,
        };
        let chain_id = hex::encode(id);
        let mut w = Writer {
            sink: Sink {
                path: cfg.file.clone(),
                file: None,
                dev: 0,
                ino: 0,
                end: 0,
            },
            chain_json: format!("\",\"chain\":\"{chain_id}\",\"seq\":"),
            chain: Chain {
                seq: 0,
                prev: [b'0'; 64],
            },
            names,
            process: super::process::fields(),
            lost: 0,
            dropped_seen: DROPPED.load(Ordering::Relaxed),
            dropped_told: 0,
            failed,
            syslog,
            level: match cfg.level {
                crate::config::audit::AuditLevel::Keys => "keys",
                crate::config::audit::AuditLevel::All => "all",
            },
            started: false,
            linger: cfg.on_failure != crate::config::audit::OnFailure::Refuse,
            clock: Clock::default(),
            buf: String::new(),
        };
        let r = w.write_batch(&mut []);
        (w, r)
    }

    /// Appends one line to `buf`: the chain's fields, the process's, `body`'s, `prev`;
    /// the chain moves on to it.
    fn record(&mut self, buf: &mut String, at: SystemTime, body: impl FnOnce(&mut String)) {
        let start = buf.len();
        buf.push_str("{\"time\":\"");
        self.clock.push(buf, at);
        // Rendered once: the id is hex, the prev hash too (no escaping).
        buf.push_str(&self.chain_json);
        buf.push_str(itoa::Buffer::new().format(self.chain.seq));
        buf.push_str(&self.process);
        body(buf);
        buf.push_str(",\"prev\":\"");
        buf.push_str(self.chain.prev());
        buf.push_str("\"}");
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &buf.as_bytes()[start..]);
        let _ = hex::encode_to_slice(digest.as_ref(), &mut self.chain.prev);
        self.chain.seq += 1;
        buf.push('\n');
    }

    /// The records that go before a batch: a reopen after rotation, lines lost or dropped.
    fn preamble(&mut self, buf: &mut String) -> io::Result<()> {
        let reopened = self.sink.check_rotation()?;
        let now = SystemTime::now();
        if !self.started {
            let level = self.level;
            self.record(buf, now, |out| {
                field_str(out, "eventName", "audit.start");
                field_str(out, "hsmuxVersion", env!("CARGO_PKG_VERSION"));
                field_str(out, "level", level);
            });
        } else if let Some(why) = reopened {
            self.record(buf, now, |out| {
                field_str(out, "eventName", "audit.reopen");
                field_str(out, "detail", why);
            });
        }
        let lost = self.lost;
        self.count_record(
            buf,
            now,
            "audit.lost",
            lost,
            "lines this process could not write (disk error)",
        );
        let dropped = DROPPED.load(Ordering::Relaxed);
        self.dropped_told = dropped.max(self.dropped_seen);
        let n = self.dropped_told - self.dropped_seen;
        self.count_record(
            buf,
            now,
            "audit.dropped",
            n,
            "lines dropped with the queue full (on_full = \"drop\")",
        );
        Ok(())
    }

    /// A record that `n` (if any) lines are missing, and why.
    fn count_record(&mut self, buf: &mut String, at: SystemTime, event: &str, n: u64, why: &str) {
        if n > 0 {
            self.record(buf, at, |out| {
                field_str(out, "eventName", event);
                field_num(out, "lines", n);
                field_str(out, "detail", why);
            });
        }
    }

    /// Writes `buf`: on success the waiting callers hear so and a failure is over; on
    /// failure (the caller rolls the chain back) they hear that.
    fn commit(&mut self, buf: &str, acks: &mut Vec<Arc<Ack>>) -> io::Result<()> {
        let r = self.sink.write(buf.as_bytes());
        let ok = r.is_ok();
        if ok {
            self.started = true;
            self.lost = 0;
            self.dropped_seen = self.dropped_told;
            if self.failed.swap(false, Ordering::SeqCst) {
                log::warn!("audit: {} is written again", self.sink.path.display());
            }
            self.to_syslog(buf);
        }
        for a in acks.drain(..) {
            a.set(ok);
        }
        r
    }

    fn to_syslog(&self, buf: &str) {
        if let Some((sock, path)) = &self.syslog {
            for line in buf.lines() {
                let msg = format!("<{SYSLOG_PRI}>hsmux[{}]: {line}", std::process::id());
                let _ = sock.send_to(msg.as_bytes(), path);
            }
        }
    }

    /// Writes one batch of events (possibly none: the start record, or a retry after a
    /// failure).
    fn write_batch(&mut self, lanes: &mut [Vec<Queued>]) -> io::Result<()> {
        let saved = self.chain.clone();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut acks = Vec::new();
        let mut events = 0u64;
        let pre = self.preamble(&mut buf);
        let names = self.names.clone();
        let mut cursor = vec![0; lanes.len()];
        while let Some(q) = next_in_time(lanes, &mut cursor) {
            let event = &q.event;
            self.record(&mut buf, event.time, |out| event.render_fields(out, &names));
            acks.extend(q.ack.take());
            events += 1;
        }
        lanes.iter_mut().for_each(Vec::clear);
        let r = match pre {
            Ok(()) if buf.is_empty() => Ok(()),
            Ok(()) => self.commit(&buf, &mut acks),
            Err(e) => {
                for a in acks.drain(..) {
                    a.set(false);
                }
                Err(e)
            }
        };
        // A burst's buffer is not kept for ever.
        if buf.capacity() > KEPT_BUFFER {
            buf = String::new();
        }
        self.buf = buf;
        if let Err(e) = r {
            self.chain = saved;
            self.lost += events;
            WRITE_ERRORS.fetch_add(events, Ordering::Relaxed);
            if !self.failed.swap(true, Ordering::SeqCst) {
                log::error!(
                    "audit: cannot write {}: {e}; {events} line(s) lost (counted in hsmux_audit_write_errors_total)",
                    self.sink.path.display()
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// The thread's loop, until the queue is closed (`C_Finalize`, process exit); ends the
    /// chain with an `audit.stop` record.
    pub fn run(mut self, queue: Arc<Queue>) {
        let mut lanes = taken_lanes();
        let linger = if self.linger { LINGER } else { Duration::ZERO };
        loop {
            let taken = queue.take(&mut lanes, RETRY, linger);
            if lanes.iter().any(|l| !l.is_empty())
                || self.failed.load(Ordering::Relaxed)
                || self.lost > 0
                || !self.started
            {
                let _ = self.write_batch(&mut lanes);
            }
            if taken.closed {
                break;
            }
        }
        let mut buf = String::new();
        self.record(&mut buf, SystemTime::now(), |out| {
            field_str(out, "eventName", "audit.stop");
        });
        let _ = self.commit(&buf, &mut Vec::new());
    }
}
