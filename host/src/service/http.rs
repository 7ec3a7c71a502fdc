//! The HTTP listener, under limits no client can lift: at most
//! `max_connections` open (a connection over the limit is closed at once,
//! so idle sockets cannot lock every client out), request headers within
//! `header_timeout` (the same timer bounds the idle time between requests
//! on a kept-alive connection), bodies read within a time and a shared byte
//! budget, and a shutdown that stops waiting after `grace`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use vigil_runtime::metrics::Metrics;

/// Connection-level limits (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub grace: Duration,
}

/// Accepts and serves HTTP/1.1 connections until `shutdown` resolves, then
/// lets in-flight requests finish for at most `grace`. HTTP/1 only: its
/// header and idle timeouts are what keep a connection from being held
/// open for free.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors, most likely: back off a little
                    // rather than spin; the connections we hold will close.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.add("vigil_http_connections_refused_total", vec![], 1.0);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("http connection: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    let left = graceful.count();
    if tokio::time::timeout(limits.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            connections = left,
            "shutdown: requests still in flight after {:?}; not waiting for them",
            limits.grace
        );
    }
}

/// Raises this process's open-file limit to its hard limit, so the
/// connection limit (not the descriptor table) is what refuses clients.
pub fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Request bodies held in memory at once, in bytes, across all requests.
/// A body takes from it as its bytes arrive, so a slow client holds only
/// what it has sent, and gives back when its request is done.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// A body read in full, and its share of the budget.
pub struct ReadBody {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// Why a body could not be read, as the status to answer.
#[derive(Debug)]
pub struct BodyRefused {
    pub status: StatusCode,
    pub message: String,
}

const UNIT: usize = 1024;

impl BodyBudget {
    pub fn new(total_bytes: usize) -> Self {
        let units = total_bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Self { bytes: Arc::new(Semaphore::new(units)) }
    }

    /// Reads `body` in full: at most `max` bytes, within `timeout`.
    pub async fn read(&self, body: Body, max: usize, timeout: Duration) -> Result<ReadBody, BodyRefused> {
        let read = async {
            let mut body = body;
            let mut buf = Vec::new();
            let mut held: Option<OwnedSemaphorePermit> = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| BodyRefused {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("reading the body: {e}"),
                })?;
                let Ok(data) = frame.into_data() else { continue };
                if buf.len() + data.len() > max {
                    return Err(BodyRefused {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        message: format!("body over the limit of {max} bytes (server.max_body_bytes)"),
                    });
                }
                let have = held.as_ref().map_or(0, |p| p.num_permits());
                let need = (buf.len() + data.len()).div_ceil(UNIT).saturating_sub(have) as u32;
                if need > 0 {
                    let more = self.bytes.clone().acquire_many_owned(need).await.expect("budget never closed");
                    match held.as_mut() {
                        Some(p) => p.merge(more),
                        None => held = Some(more),
                    }
                }
                buf.extend_from_slice(&data);
            }
            Ok(ReadBody { bytes: Bytes::from(buf), _held: held })
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(BodyRefused {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!("the body did not arrive within {timeout:?} (server.body_timeout_ms)"),
            }),
        }
    }
}
