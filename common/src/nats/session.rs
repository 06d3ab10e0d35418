//! A NATS session's set-up: TCP, the server's `INFO` (in plain text, before any TLS), the TLS
//! upgrade (`tls://`), `CONNECT` (credentials, headers on), the subscriptions (topic filters
//! mapped to subjects, `$share/{group}/{filter}` to a queue group), then a `PING` whose `PONG`
//! confirms them all, or whose `-ERR` says why not. Keep-alive and reconnects are the driver's
//! (`link::driver`), with this transport's `PING`.

use super::codec::{self, Connect, Op, ServerInfo};
use super::link::Decoder;
use super::subject::{self, Use};
use crate::link::{self, Session, SessionError, SessionSpec};
use crate::net::{self, TransportError, WireReader};
use bytes::{Buf, BufMut, BytesMut};
use std::future::Future;
use std::io;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Where the handshake reads from: the plain socket until INFO, the session's reader after.
trait ReadMore {
    fn more<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
}

impl ReadMore for TcpStream {
    fn more<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        buf.reserve(4096);
        self.read_buf(buf)
    }
}

impl ReadMore for WireReader {
    fn more<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.read_into(buf)
    }
}

/// Reads until `buf` starts with one whole operation, and returns it (not taken from `buf`).
async fn next<'b, R: ReadMore>(
    reader: &mut R,
    buf: &'b mut BytesMut,
    spec: &SessionSpec,
) -> Result<(Op<'b>, usize), SessionError> {
    loop {
        match codec::next_op(buf, usize::MAX) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Err(SessionError::Protocol(e.to_string())),
        }
        match reader.more(buf).await {
            Ok(0) => return Err(SessionError::Closed),
            Ok(_) => {}
            Err(e) => return Err(link::handshake_error(&spec.url, e)),
        }
    }
    match codec::next_op(buf, usize::MAX) {
        Ok(Some(found)) => Ok(found),
        _ => Err(SessionError::Protocol("unreadable operation".into())),
    }
}

/// The subject and queue group a topic filter subscribes to: `$share/{group}/{filter}` is a
/// queue subscription, the filter mapped from the MQTT layout (`req/+` → `req.*`).
pub fn subscription(filter: &str) -> Result<(String, Option<String>), String> {
    if let Some(shared) = filter.strip_prefix("$share/") {
        let (group, rest) = shared
            .split_once('/')
            .ok_or_else(|| format!("'{filter}': expected $share/GROUP/FILTER"))?;
        subject::check(group, Use::Publish).map_err(|e| format!("queue group: {e}"))?;
        return Ok((
            subject::from_mqtt(rest, Use::Subscribe)?,
            Some(group.to_string()),
        ));
    }
    Ok((subject::from_mqtt(filter, Use::Subscribe)?, None))
}

/// What a `-ERR` during the handshake means.
fn refusal(text: &[u8]) -> SessionError {
    let text = String::from_utf8_lossy(text).into_owned();
    let lower = text.to_ascii_lowercase();
    if lower.contains("authorization") || lower.contains("authentication") {
        SessionError::Auth(text)
    } else if let Some(i) = lower.find("permissions violation for subscription to ") {
        let subject = text[i + "permissions violation for subscription to ".len()..].trim();
        SessionError::SubscribeRejected(subject.trim_matches('"').to_string())
    } else {
        SessionError::Refused(text)
    }
}

/// Opens the connection and sets the session up (see the module docs). No time limit of its
/// own (see `link::establish`).
pub(super) async fn connect(spec: &SessionSpec) -> Result<Session<Decoder>, SessionError> {
    let opts = &spec.opts;
    let mut tcp = net::tcp_connect(&spec.url, spec.bind).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let info: ServerInfo = match next(&mut tcp, &mut buf, spec).await? {
        (Op::Info(json), len) => {
            let info = codec::parse_info(json)
                .map_err(|e| SessionError::Protocol(format!("INFO: {e}")))?;
            buf.advance(len);
            info
        }
        (Op::Err(text), _) => return Err(refusal(text)),
        (other, _) => {
            return Err(SessionError::Protocol(format!(
                "expected INFO from a NATS server, got {other:?}"
            )))
        }
    };
    let tls = spec.url.scheme.is_tls();
    // a mismatch retrying cannot fix: final, like other TLS configuration errors
    if info.tls_required && !tls {
        return Err(TransportError::TlsConfig(
            "the server requires TLS: use BROKER=tls://host:port (and TLS_CA_FILE)".into(),
        )
        .into());
    }
    if tls && !info.tls_required && !info.tls_available {
        return Err(TransportError::TlsConfig(
            "the server offers no TLS: use BROKER=nats://host:port".into(),
        )
        .into());
    }
    if !info.headers {
        return Err(SessionError::Refused(
            "the server does not support headers (NATS 2.2 or later is needed)".into(),
        ));
    }
    // The server sends nothing after INFO until it has our CONNECT.
    if tls && !buf.is_empty() {
        return Err(SessionError::Protocol("bytes after INFO before TLS".into()));
    }
    let (mut reader, mut writer) = net::over(tcp, &spec.url, opts, spec.tls.as_ref()).await?;

    let mut out = BytesMut::with_capacity(512);
    codec::encode_connect(
        &mut out,
        &Connect {
            name: &spec.client_id,
            user: opts.username(),
            pass: opts.password(),
            tls_required: tls,
        },
    );
    for (sid, (filter, _qos)) in spec.subscriptions.iter().enumerate() {
        let (subject, queue) = subscription(filter).map_err(SessionError::Protocol)?;
        codec::encode_sub(
            &mut out,
            subject.as_bytes(),
            queue.as_deref().map(str::as_bytes),
            sid as u64 + 1,
        );
    }
    out.put_slice(codec::PING);
    writer
        .write_all(out.split().freeze())
        .await
        .map_err(|e| link::handshake_error(&spec.url, e))?;

    // Until our PONG: messages for the new subscriptions may come first; they are kept, in
    // order, for the driver to dispatch.
    let mut kept = BytesMut::new();
    let mut max_payload = info.max_payload();
    loop {
        let (op, len) = next(&mut reader, &mut buf, spec).await?;
        match op {
            Op::Pong => {
                buf.advance(len);
                kept.extend_from_slice(&buf);
                break;
            }
            Op::Err(text) => return Err(refusal(text)),
            Op::Info(json) => {
                if let Ok(i) = codec::parse_info(json) {
                    max_payload = i.max_payload();
                }
            }
            Op::Ping => {
                writer
                    .write_all(bytes::Bytes::from_static(codec::PONG))
                    .await
                    .map_err(|e| link::handshake_error(&spec.url, e))?;
            }
            Op::Msg(_) => kept.extend_from_slice(&buf[..len]),
            Op::Ok => {}
        }
        buf.advance(len);
    }
    Ok(Session {
        reader,
        writer,
        pending: kept,
        decoder: Decoder::new(max_payload),
        flow_limit: u32::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_become_subjects_and_queue_groups() {
        assert_eq!(
            subscription("$share/workers/req/+").unwrap(),
            ("req.*".into(), Some("workers".into()))
        );
        assert_eq!(
            subscription("resp/host-1/3").unwrap(),
            ("resp.host-1.3".into(), None)
        );
        assert_eq!(subscription("req.>").unwrap(), ("req.>".into(), None));
        assert!(subscription("$share/workers").is_err());
        assert!(subscription("$share/a b/req/+").is_err());
        assert!(subscription("req//x").is_err());
    }

    #[test]
    fn handshake_refusals_say_what_to_check() {
        assert!(matches!(
            refusal(b"Authorization Violation"),
            SessionError::Auth(_)
        ));
        assert!(matches!(
            refusal(b"Permissions Violation for Subscription to \"req.*\""),
            SessionError::SubscribeRejected(s) if s == "req.*"
        ));
        assert!(matches!(
            refusal(b"maximum connections exceeded"),
            SessionError::Refused(_)
        ));
    }
}
