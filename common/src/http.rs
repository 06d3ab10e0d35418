//! The small HTTP/1.1 server behind `/metrics`, `/stats`, `/health`, `/ready` (and `/` where a
//! binary serves a page). Each client gets its own task with read/write deadlines and a size
//! limit, so a slow or malformed client never blocks anything else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What a binary exposes over HTTP.
pub trait Endpoints: Send + Sync + 'static {
    /// Prometheus text format.
    fn metrics(&self) -> String;
    /// JSON snapshot.
    fn stats(&self) -> String;
    /// Connected and subscribed.
    fn ready(&self) -> bool;
    /// Any other GET path: `Some((content_type, body))` to serve it.
    fn other(&self, _path: &str) -> Option<(&'static str, Vec<u8>)> {
        None
    }
}

const MAX_HEAD: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves until `shutdown`. Returns the bound address (port 0 picks one).
pub async fn serve<E: Endpoints>(
    addr: SocketAddr,
    endpoints: Arc<E>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let e = endpoints.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(IO_TIMEOUT * 2, handle(stream, e)).await;
                        });
                    } else {
                        // e.g. out of file descriptors: back off instead of spinning
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    });
    Ok(local)
}

async fn handle<E: Endpoints>(mut stream: TcpStream, e: Arc<E>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("read timeout"))??;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                431,
                "text/plain",
                b"request header too large\n",
            )
            .await;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", b"only GET is supported\n").await;
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let body = e.metrics();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                body.as_bytes(),
            )
            .await
        }
        "/stats" => {
            let body = e.stats();
            respond(&mut stream, 200, "application/json", body.as_bytes()).await
        }
        "/health" | "/healthz" => respond(&mut stream, 200, "text/plain", b"ok\n").await,
        "/ready" | "/readyz" => {
            if e.ready() {
                respond(&mut stream, 200, "text/plain", b"ready\n").await
            } else {
                respond(&mut stream, 503, "text/plain", b"not ready\n").await
            }
        }
        other => match e.other(other) {
            Some((ct, body)) => respond(&mut stream, 200, ct, &body).await,
            None => respond(&mut stream, 404, "text/plain", b"not found\n").await,
        },
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(IO_TIMEOUT, write)
        .await
        .map_err(|_| std::io::Error::other("write timeout"))?
}

/// Minimal HTTP GET client for local endpoints (tests, the loadgen's worker-stats proxy).
/// Speaks HTTP/1.0 so that servers answer with a plain body, never chunked.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::other("timeout"))?
}
