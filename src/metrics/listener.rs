//! The `/metrics` HTTP listener: a `std::net::TcpListener` on its own thread, one
//! connection at a time (a scrape is one short request), each with a 2 s budget for reading
//! the request and another for writing the answer, so a slow or silent client holds up the
//! next scrape for 2 s at most. It only reads the counters (`Metrics::render`), so it never
//! holds up a PKCS#11 call.

use super::Metrics;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one connection may take to send its request, and again to take the answer.
const IO_BUDGET: Duration = Duration::from_secs(2);
/// Reads and writes wait in slices this long, so that `stop` is seen quickly.
const SLICE: Duration = Duration::from_millis(100);
/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 8192;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The running listener. `stop` (or dropping it) ends and joins its thread.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` now (an error names it) and serves `GET /metrics` on a new thread.
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> Result<Listener, String> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("metrics: cannot listen on {addr}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("metrics: cannot listen on {addr}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hsmux-metrics".into())
            .spawn(move || serve(listener, metrics, flag))
            .map_err(|e| format!("metrics: cannot start the listener thread for {addr}: {e}"))?;
        log::info!("metrics: serving http://{local}/metrics");
        Ok(Listener {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address bound (with the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread (within about 0.1 s, or once a connection being
    /// answered is done).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        let target = wake_address(self.addr);
        let mut woke = false;
        for _ in 0..3 {
            if TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok() {
                woke = true;
                break;
            }
        }
        if woke || thread.is_finished() {
            let _ = thread.join();
        } else {
            // Cannot happen short of the loopback interface going away; joining would hang.
            log::error!(
                "metrics: cannot wake the listener on {}; left running",
                self.addr
            );
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where to connect to reach a listener bound to `addr` (the unspecified address is
/// reached through loopback).
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                let r = catch_unwind(AssertUnwindSafe(|| handle(stream, &metrics, &stop)));
                if r.is_err() {
                    log::error!("metrics: internal error answering a request (panic)");
                }
            }
            Err(e) => match e.kind() {
                ErrorKind::Interrupted | ErrorKind::ConnectionAborted => {}
                _ => {
                    // E.g. out of file descriptors: do not spin.
                    log::warn!("metrics: accept failed: {e}");
                    std::thread::sleep(SLICE);
                }
            },
        }
    }
}

/// Reads one request head and answers it; any I/O failure just ends the connection.
fn handle(mut stream: TcpStream, metrics: &Metrics, stop: &AtomicBool) {
    let mut buf = [0u8; MAX_HEAD];
    let response = match read_head(&mut stream, &mut buf, stop) {
        Head::Complete(len) => answer(buf.get(..len).unwrap_or(&[]), metrics),
        Head::TooLarge => response(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            b"request too large\n",
            false,
            "",
        ),
        Head::Gone => return,
    };
    if write_all(&mut stream, &response, stop) {
        // Let the client read everything before the socket closes: closing with unread
        // input would reset the connection and could cut the answer short.
        let _ = stream.shutdown(Shutdown::Write);
        drain(&mut stream);
    }
}

/// The answer to a request head: the metrics at `GET /metrics` (headers only for `HEAD`).
fn answer(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    match parse_request_line(head) {
        Some((method @ ("GET" | "HEAD"), path)) => {
            let head_only = method == "HEAD";
            if path == "/metrics" {
                response(
                    200,
                    "OK",
                    CONTENT_TYPE,
                    metrics.render().as_bytes(),
                    head_only,
                    "",
                )
            } else {
                response(
                    404,
                    "Not Found",
                    "text/plain",
                    b"not found\n",
                    head_only,
                    "",
                )
            }
        }
        Some(_) => response(
            405,
            "Method Not Allowed",
            "text/plain",
            b"method not allowed\n",
            false,
            "Allow: GET, HEAD\r\n",
        ),
        None => response(
            400,
            "Bad Request",
            "text/plain",
            b"bad request\n",
            false,
            "",
        ),
    }
}

enum Head {
    /// The head's length, through its empty line.
    Complete(usize),
    /// The buffer filled before the empty line.
    TooLarge,
    /// The client closed, failed or ran out of time (or the listener is stopping).
    Gone,
}

/// Reads until the end of the request head (an empty line).
fn read_head(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> Head {
    let deadline = Instant::now() + IO_BUDGET;
    let mut n = 0;
    loop {
        if let Some(end) = head_end(buf.get(..n).unwrap_or(&[])) {
            return Head::Complete(end);
        }
        let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) else {
            return Head::TooLarge;
        };
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Acquire) {
            return Head::Gone;
        }
        if stream
            .set_read_timeout(Some((deadline - now).min(SLICE)))
            .is_err()
        {
            return Head::Gone;
        }
        match stream.read(rest) {
            Ok(0) => return Head::Gone,
            Ok(k) => n += k,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Head::Gone,
        }
    }
}

/// The length of the head up to its closing empty line (`\r\n\r\n` or `\n\n`).
fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `(method, path)` of a well-formed request line (`GET /metrics?x HTTP/1.1` gives
/// `("GET", "/metrics")`).
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.iter().position(|&c| c == b'\n')?;
    let line = std::str::from_utf8(head.get(..line_end)?).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|c| c.is_ascii_uppercase())
        || !target.starts_with('/')
        || !version.starts_with("HTTP/")
    {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some((method, path))
}

fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    extra_headers: &str,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Writes everything within the budget; false if the client failed or was too slow.
fn write_all(stream: &mut TcpStream, mut data: &[u8], stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + IO_BUDGET;
    while !data.is_empty() {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Acquire) {
            return false;
        }
        if stream
            .set_write_timeout(Some((deadline - now).min(SLICE)))
            .is_err()
        {
            return false;
        }
        match stream.write(data) {
            Ok(0) => return false,
            Ok(k) => data = data.get(k..).unwrap_or(&[]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads what the client still sends until it closes, briefly.
fn drain(stream: &mut TcpStream) {
    let deadline = Instant::now() + SLICE;
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    while total < 64 * 1024 {
        let now = Instant::now();
        if now >= deadline || stream.set_read_timeout(Some(deadline - now)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(k) => total += k,
        }
    }
}

#[cfg(test)]
pub(crate) mod parse_tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"GET /metrics?name=x HTTP/1.0\n\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(parse_request_line(b"GET metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request_line(b"\xff\xfe /x HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request_line(b""), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
