//! Tests of the nats-server harness, spoken to with rr-common's NATS codec over plain sockets:
//! start on a free port, request/reply with the correlation header through a queue group,
//! user/password, TLS (with and without client certificates), max payload, kill and restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rr_common::nats::codec::{self, Connect, Op, Publish, ServerInfo, MAX_CORRELATION};
use rr_testkit::{NatsOptions, NatsServer, TestPki};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What a test looks at in a server operation (owned, so the read buffer can move on).
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Info(ServerInfo),
    Msg {
        subject: String,
        reply: Option<String>,
        correlation: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    Ping,
    Pong,
    Err(String),
}

struct Client {
    io: Box<dyn Stream>,
    buf: BytesMut,
}

impl Client {
    async fn next(&mut self) -> std::io::Result<Got> {
        loop {
            if let Some((op, len)) = codec::next_op(&self.buf, 1 << 20).unwrap() {
                let got = match op {
                    Op::Info(json) => Got::Info(codec::parse_info(json).unwrap()),
                    Op::Msg(m) => {
                        let mut out = [0u8; MAX_CORRELATION];
                        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                        Got::Msg {
                            subject: text(m.subject),
                            reply: m.reply.map(text),
                            correlation: m.correlation(&mut out).unwrap().map(<[u8]>::to_vec),
                            payload: m.payload.to_vec(),
                        }
                    }
                    Op::Ping => Got::Ping,
                    Op::Pong => Got::Pong,
                    Op::Ok => continue,
                    Op::Err(e) => Got::Err(String::from_utf8_lossy(e).into_owned()),
                };
                let _ = self.buf.split_to(len);
                return Ok(got);
            }
            if timeout(WAIT, self.io.read_buf(&mut self.buf)).await?? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// CONNECT then PING: `Ok(())` on PONG, `Err(message)` on -ERR or a broken connection.
    async fn login(&mut self, user: Option<(&str, &str)>) -> Result<(), String> {
        let mut b = BytesMut::new();
        codec::encode_connect(
            &mut b,
            &Connect {
                name: "testkit",
                user: user.map(|u| u.0),
                pass: user.map(|u| u.1),
                tls_required: false,
            },
        );
        b.extend_from_slice(codec::PING);
        self.send(&b).await;
        match self.next().await {
            Ok(Got::Pong) => Ok(()),
            Ok(Got::Err(e)) => Err(e),
            Ok(other) => panic!("expected PONG or -ERR, got {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Connects and reads the server's INFO (before any TLS, as NATS does).
async fn open(port: u16) -> (Client, ServerInfo) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = Client {
        io: Box::new(tcp),
        buf: BytesMut::new(),
    };
    let Got::Info(info) = c.next().await.unwrap() else {
        panic!("the server speaks first, with INFO")
    };
    (c, info)
}

async fn connected(server: &NatsServer) -> Client {
    let (mut c, _) = open(server.port()).await;
    c.login(None).await.unwrap();
    c
}

#[test]
fn nats_server_is_installed() {
    assert!(
        NatsServer::available(),
        "nats-server is missing: run scripts/install-deps.sh"
    );
}

#[tokio::test]
async fn request_and_reply_through_a_queue_group_keep_the_correlation() {
    let server = NatsServer::start(NatsOptions::new()).unwrap();
    assert!(
        server.url().starts_with("nats://127.0.0.1:"),
        "{}",
        server.url()
    );
    let (mut worker, info) = open(server.port()).await;
    assert!(info.headers, "nats-server 2.9 supports headers");
    worker.login(None).await.unwrap();
    let mut b = BytesMut::new();
    codec::encode_sub(&mut b, b"req.*", Some(b"workers"), 1);
    b.extend_from_slice(codec::PING);
    worker.send(&b).await;
    assert_eq!(worker.next().await.unwrap(), Got::Pong, "SUB taken");

    let mut requester = connected(&server).await;
    let mut b = BytesMut::new();
    codec::encode_sub(&mut b, b"resp.host.0", None, 7);
    let corr = [0xde, 0xad, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    let p = Publish {
        subject: b"req.3",
        reply: Some(b"resp.host.0"),
        correlation: Some(&corr),
        payload: &[b"ping-", b"body"],
    };
    codec::encode_publish(&mut b, &p, info.max_payload()).unwrap();
    requester.send(&b).await;

    let Got::Msg {
        subject,
        reply,
        correlation,
        payload,
    } = worker.next().await.unwrap()
    else {
        panic!("the worker gets the request")
    };
    assert_eq!(subject, "req.3");
    assert_eq!(payload, b"ping-body");
    assert_eq!(correlation.as_deref(), Some(&corr[..]));
    // answer on the reply subject, correlation echoed
    let mut b = BytesMut::new();
    let answer = Publish {
        subject: reply.as_deref().unwrap().as_bytes(),
        reply: None,
        correlation: correlation.as_deref(),
        payload: &[b"pong"],
    };
    codec::encode_publish(&mut b, &answer, info.max_payload()).unwrap();
    worker.send(&b).await;
    assert_eq!(
        requester.next().await.unwrap(),
        Got::Msg {
            subject: "resp.host.0".into(),
            reply: None,
            correlation: Some(corr.to_vec()),
            payload: b"pong".to_vec(),
        }
    );
}

#[tokio::test]
async fn user_and_password_are_required_and_checked() {
    let server = NatsServer::start(NatsOptions::new().user("bench", "s3cret")).unwrap();
    let (mut c, info) = open(server.port()).await;
    assert!(info.auth_required);
    let err = c.login(Some(("bench", "wrong"))).await.unwrap_err();
    assert!(err.contains("Authorization Violation"), "{err}");
    let (mut c, _) = open(server.port()).await;
    assert!(c.login(None).await.is_err(), "anonymous is refused");
    let (mut c, _) = open(server.port()).await;
    c.login(Some(("bench", "s3cret"))).await.unwrap();
}

fn tls_connector(pki: &TestPki, client_cert: bool) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = |p| {
        CertificateDer::pem_file_iter(p)
            .unwrap()
            .map(Result::unwrap)
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs(&pki.ca));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if client_cert {
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).unwrap();
        builder
            .with_client_auth_cert(certs(&pki.client_cert).collect(), key)
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// INFO in plain text, then the TLS handshake on the same socket, then CONNECT/PING.
async fn tls_login(port: u16, connector: &tokio_rustls::TlsConnector) -> Result<(), String> {
    let (c, info) = open(port).await;
    assert!(info.tls_required, "the server asks for TLS in INFO");
    assert!(c.buf.is_empty(), "nothing after INFO before the handshake");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, c.io)
        .await
        .map_err(|e| e.to_string())?;
    let mut c = Client {
        io: Box::new(tls),
        buf: BytesMut::new(),
    };
    c.login(None).await
}

#[tokio::test]
async fn tls_listener_upgrades_after_info_and_checks_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let server = NatsServer::start(NatsOptions::new().tls(pki.server_files(false))).unwrap();
    assert!(
        server.url().starts_with("tls://127.0.0.1:"),
        "{}",
        server.url()
    );
    tls_login(server.port(), &tls_connector(&pki, false))
        .await
        .unwrap();

    let strict = NatsServer::start(NatsOptions::new().tls(pki.server_files(true))).unwrap();
    tls_login(strict.port(), &tls_connector(&pki, true))
        .await
        .unwrap();
    let refused = timeout(WAIT, tls_login(strict.port(), &tls_connector(&pki, false))).await;
    assert!(
        !matches!(refused, Ok(Ok(()))),
        "a client without certificate must be refused"
    );
}

#[tokio::test]
async fn max_payload_from_info_is_what_the_server_enforces() {
    let server = NatsServer::start(NatsOptions::new().max_payload(1024)).unwrap();
    let (mut c, info) = open(server.port()).await;
    assert_eq!(info.max_payload(), 1024);
    c.login(None).await.unwrap();
    let big = [0u8; 1025];
    let p = Publish {
        subject: b"s",
        reply: None,
        correlation: None,
        payload: &[&big],
    };
    let mut b = BytesMut::new();
    assert!(codec::encode_publish(&mut b, &p, info.max_payload()).is_err());
    // what the encoder spares us: the server drops a connection that sends it anyway
    codec::encode_publish(&mut b, &p, usize::MAX).unwrap();
    c.send(&b).await;
    match c.next().await {
        Ok(Got::Err(e)) => assert!(e.contains("Maximum Payload"), "{e}"),
        other => panic!("expected -ERR, got {other:?}"),
    }
}

#[tokio::test]
async fn kill_and_restart_keep_the_port_and_answer_pings() {
    let mut server = NatsServer::start(NatsOptions::new()).unwrap();
    let port = server.port();
    let mut c = connected(&server).await;
    let first_pid = server.pid();
    server.kill();
    assert!(!server.is_running());
    assert!(
        c.next().await.is_err(),
        "the connection ends with the server"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), first_pid);
    let mut c = connected(&server).await;
    c.send(codec::PING).await;
    assert_eq!(c.next().await.unwrap(), Got::Pong);
    assert!(server.cpu_seconds().unwrap() >= 0.0);
    assert!(server.rss_bytes() > 0);
    assert!(server.log().contains("Server is ready"));
}

#[tokio::test]
async fn a_bad_config_is_an_error_with_the_log() {
    let err = NatsServer::start(NatsOptions::new().config_line("no_such_option: {")).unwrap_err();
    assert!(format!("{err:#}").contains("nats-server"), "{err:#}");
}
