//! The `/metrics` HTTP listener: hyper's HTTP/1 server on a single-threaded tokio runtime
//! of its own, on its own thread (never the remote backends' runtime nor a consumer's
//! thread). It only reads the counters (`Metrics::render`), so it never holds up a PKCS#11
//! call. Each connection has [`HEAD_BUDGET`] to send its request head and [`CONN_BUDGET`]
//! in all, and at most [`MAX_CONNECTIONS`] are served at once, so slow or silent clients
//! cost bounded time and memory and do not hold up other scrapes.
//!
//! The format follows the request's `Accept` header: OpenMetrics 1.0 (`openmetrics.rs`, the
//! official client library's encoder) when the scraper prefers it, as Prometheus does, and
//! the 0.0.4 text otherwise (curl, `promtool check metrics`).

use super::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE as CT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// How long a connection may take to send its request head.
const HEAD_BUDGET: Duration = Duration::from_secs(2);
/// How long a connection may stay open in all (request and answer).
const CONN_BUDGET: Duration = Duration::from_secs(4);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 8;
/// Largest request head accepted (hyper answers 431 past it).
const MAX_HEAD: usize = 8192;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Whether an `Accept` header prefers OpenMetrics to the 0.0.4 text: the highest `q` of an
/// `application/openmetrics-text` range against that of `text/plain`, `text/*` and `*/*`
/// (ties go to OpenMetrics, which a client naming it asked for explicitly).
pub(crate) fn wants_openmetrics(accept: &str) -> bool {
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

/// The running listener. `stop` (or dropping it) ends and joins its thread.
pub struct Listener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` now (an error names it) and serves `GET /metrics` on a new thread.
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> Result<Listener, String> {
        let fail = |e: &dyn std::fmt::Display| format!("metrics: cannot listen on {addr}: {e}");
        let listener = TcpListener::bind(addr).map_err(|e| fail(&e))?;
        let local = listener.local_addr().map_err(|e| fail(&e))?;
        listener.set_nonblocking(true).map_err(|e| fail(&e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| fail(&e))?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("hsmux-metrics".into())
            .spawn(move || {
                rt.block_on(serve(listener, metrics, stopped));
                // Connections still open are dropped with the runtime.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| format!("metrics: cannot start the listener thread for {addr}: {e}"))?;
        log::info!("metrics: serving http://{local}/metrics");
        Ok(Listener {
            addr: local,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address bound (with the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread (open connections are dropped).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(listener: TcpListener, metrics: Arc<Metrics>, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("metrics: cannot serve: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: do not spin.
                log::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_BUDGET)
                .max_buf_size(MAX_HEAD)
                .title_case_headers(true)
                .keep_alive(false)
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&req, &metrics)) }
                    }),
                );
            // Any I/O failure or timeout just ends the connection.
            let _ = tokio::time::timeout(CONN_BUDGET, conn).await;
            drop(permit);
        });
    }
}

/// The answer to a request: the metrics at `GET /metrics` (hyper leaves out the body for
/// `HEAD`), 404 elsewhere, 405 for other methods.
fn answer(req: &Request<Incoming>, metrics: &Arc<Metrics>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match *req.method() {
        Method::GET | Method::HEAD if req.uri().path() == "/metrics" => {
            let openmetrics = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(wants_openmetrics);
            let render = || match openmetrics {
                true => (
                    super::openmetrics::CONTENT_TYPE,
                    metrics.render_openmetrics(),
                ),
                false => (CONTENT_TYPE, metrics.render()),
            };
            // A panic in rendering must not take the thread down: answer 500 instead.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(render)) {
                Ok((content_type, text)) => (StatusCode::OK, content_type, Bytes::from(text)),
                Err(_) => {
                    log::error!("metrics: internal error rendering the metrics (panic)");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        Bytes::from_static(b"internal error\n"),
                    )
                }
            }
        }
        Method::GET | Method::HEAD => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"method not allowed\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CT, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    resp
}
