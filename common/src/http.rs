//! The HTTP endpoints of both binaries (`/metrics`, `/stats`, `/health`, `/ready`, and `/` where
//! a binary serves a page), on hyper's HTTP/1 server: each client gets its own task with a
//! header deadline, a whole-connection deadline and a request-size limit, so a slow or malformed
//! client never blocks anything else. Also a small GET client for tests and the worker-stats poll.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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

/// Largest request head accepted (hyper's smallest buffer limit); a larger one gets 431.
const MAX_HEAD: usize = 8 * 1024;
/// A client must send its whole request head within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed this long after it was accepted, whatever it is doing.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

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
                        tokio::spawn(serve_connection(stream, endpoints.clone()));
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

async fn serve_connection<E: Endpoints>(stream: TcpStream, endpoints: Arc<E>) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = route(&*endpoints, req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // a client that reads its answer too slowly is cut off here
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
}

fn route<E: Endpoints>(e: &E, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is supported\n",
        );
    }
    match path {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", e.metrics()),
        "/stats" => reply(StatusCode::OK, "application/json", e.stats()),
        "/health" | "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" | "/readyz" => {
            if e.ready() {
                reply(StatusCode::OK, "text/plain", "ready\n")
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        other => match e.other(other) {
            Some((ct, body)) => reply(StatusCode::OK, ct, body),
            None => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// GET `path` (with its query) from `addr` ("host:port"); returns the status and the body as
/// text. For local endpoints: tests, and the loadgen's worker-stats poll.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let fetch = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        let request = Request::get(path)
            .header(HOST, addr)
            .body(Empty::<Bytes>::new())
            .map_err(std::io::Error::other)?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            let code = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            // `sender` drops here, which lets `connection` finish
            Ok::<_, std::io::Error>((code, String::from_utf8_lossy(&body).into_owned()))
        };
        let (answer, _) = tokio::join!(exchange, connection);
        answer
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| std::io::Error::other("timeout"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fixed;

    impl Endpoints for Fixed {
        fn metrics(&self) -> String {
            "m_total 1\n".into()
        }
        fn stats(&self) -> String {
            "{\"a\":1}".into()
        }
        fn ready(&self) -> bool {
            false
        }
        fn other(&self, path: &str) -> Option<(&'static str, Vec<u8>)> {
            (path == "/").then(|| ("text/html", b"<html></html>".to_vec()))
        }
    }

    async fn start() -> (String, CancellationToken) {
        let stop = CancellationToken::new();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Fixed),
            stop.clone(),
        )
        .await
        .unwrap();
        (addr.to_string(), stop)
    }

    /// Sends raw bytes, returns everything the server answers before it closes.
    async fn raw(addr: &str, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("server answers and closes")
            .unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn routes_status_codes_and_bodies() {
        let (a, stop) = start().await;
        assert_eq!(
            get(&a, "/metrics", T).await.unwrap(),
            (200, "m_total 1\n".into())
        );
        assert_eq!(
            get(&a, "/stats?x=1", T).await.unwrap(),
            (200, "{\"a\":1}".into())
        );
        assert_eq!(get(&a, "/health", T).await.unwrap().0, 200);
        assert_eq!(
            get(&a, "/ready", T).await.unwrap(),
            (503, "not ready\n".into())
        );
        assert_eq!(
            get(&a, "/", T).await.unwrap(),
            (200, "<html></html>".into())
        );
        assert_eq!(get(&a, "/nope", T).await.unwrap().0, 404);
        let post = raw(
            &a,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let head = raw(&a, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length: 10\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let old = raw(&a, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(old.starts_with("HTTP/1.0 200"), "{old}");
        assert!(
            old.contains("content-type: text/plain; version=0.0.4\r\n"),
            "{old}"
        );
        assert!(old.contains("cache-control: no-store\r\n"), "{old}");
        assert!(
            old.ends_with("\r\n\r\nm_total 1\n"),
            "plain body, not chunked: {old}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn oversized_and_malformed_requests_get_errors_not_hangs() {
        let (a, stop) = start().await;
        let big = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(3 * MAX_HEAD)
        );
        let answer = raw(&a, big.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let answer = raw(&a, b"\x16\x03\x01 garbage\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_dropped_after_the_head_deadline() {
        let (a, stop) = start().await;
        let mut s = TcpStream::connect(&a).await.unwrap();
        s.write_all(b"GET /met").await.unwrap();
        let mut buf = Vec::new();
        let t = tokio::time::Instant::now();
        let _ = s.read_to_end(&mut buf).await;
        let waited = t.elapsed();
        assert!(
            waited >= HEAD_TIMEOUT && waited < CONNECTION_TIMEOUT,
            "closed after {waited:?}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn bind_errors_are_returned() {
        let (a, stop) = start().await;
        let taken: SocketAddr = a.parse().unwrap();
        let err = serve(taken, Arc::new(Fixed), CancellationToken::new()).await;
        assert_eq!(err.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
        stop.cancel();
        assert!(get("127.0.0.1:1", "/health", T).await.is_err());
    }
}
