//! Tests of the harness itself: mosquitto (TCP, WebSocket, TLS, passwords, kill/restart) and the
//! embedded broker start on free ports and speak MQTT, checked with hand-built packets.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rr_testkit::{Embedded, Mosquitto, MosquittoOptions, TestPki};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn with_fixed_header(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = u8::try_from(len % 128).unwrap();
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// CONNECT, clean start, keep-alive 60 s; `level` 4 = MQTT 3.1.1, 5 = MQTT 5.
fn connect_packet(level: u8, client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, "MQTT");
    body.push(level);
    let login_flags = if login.is_some() { 0xC0 } else { 0 };
    body.push(0x02 | login_flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    push_str(&mut body, client_id);
    if let Some((user, password)) = login {
        push_str(&mut body, user);
        push_str(&mut body, password);
    }
    with_fixed_header(0x10, &body)
}

/// Reads one packet: (first header byte, body).
async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let first = stream.read_u8().await?;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = stream.read_u8().await?;
        len |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok((first, body))
}

/// Sends CONNECT and returns the CONNACK return/reason code.
async fn connack_code<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    level: u8,
    login: Option<(&str, &str)>,
) -> std::io::Result<u8> {
    stream
        .write_all(&connect_packet(level, "testkit", login))
        .await?;
    let (first, body) = timeout(WAIT, read_packet(stream)).await??;
    assert_eq!(first, 0x20, "expected CONNACK");
    Ok(body[1])
}

async fn tcp(url: &str) -> TcpStream {
    let addr = url.strip_prefix("mqtt://").expect("mqtt:// url");
    TcpStream::connect(addr).await.unwrap()
}

#[test]
fn mosquitto_is_installed() {
    assert!(
        Mosquitto::available(),
        "mosquitto is missing: install the `mosquitto` package (make test does)"
    );
}

#[tokio::test]
async fn mosquitto_starts_on_a_free_port_and_accepts_mqtt5_and_311() {
    let broker = Mosquitto::start(MosquittoOptions::new()).unwrap();
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));
    assert!(broker.ws_urls().is_empty());
    assert!(broker.tls_url().is_none());
    assert_eq!(
        connack_code(&mut tcp(&broker.url()).await, 5, None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        connack_code(&mut tcp(&broker.url()).await, 4, None)
            .await
            .unwrap(),
        0
    );
    assert!(broker.rss_bytes() > 0);
    assert!(broker.cpu_seconds().unwrap() >= 0.0);
    assert!(broker.log().contains("running"), "{}", broker.log());
}

#[tokio::test]
async fn two_mosquittos_get_different_ports() {
    let a = Mosquitto::start(MosquittoOptions::new()).unwrap();
    let b = Mosquitto::start(MosquittoOptions::new()).unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
}

#[tokio::test]
async fn mosquitto_websocket_listeners_speak_mqtt() {
    let broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(2)).unwrap();
    let urls = broker.ws_urls();
    assert_eq!(urls.len(), 2);
    for url in urls {
        assert!(
            url.starts_with("ws://127.0.0.1:") && url.ends_with("/mqtt"),
            "{url}"
        );
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers().get("sec-websocket-protocol").unwrap(),
            "mqtt"
        );
        ws.send(Message::binary(connect_packet(5, "ws-client", None)))
            .await
            .unwrap();
        let reply = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        let data = reply.into_data();
        assert_eq!(data[0], 0x20, "expected CONNACK, got {data:?}");
        assert_eq!(data[3], 0, "CONNACK reason code");
    }
}

#[tokio::test]
async fn mosquitto_kill_and_restart_keep_the_ports() {
    let mut broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(1)).unwrap();
    let url = broker.url();
    let ws_urls = broker.ws_urls();
    let first_pid = broker.pid();
    // A live connection across the kill leaves the old socket in TIME_WAIT on the broker side.
    let mut held = tcp(&url).await;
    assert_eq!(connack_code(&mut held, 5, None).await.unwrap(), 0);

    broker.kill();
    assert!(!broker.is_running());
    let addr = url.strip_prefix("mqtt://").unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "port still open after kill"
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        held.read(&mut buf).await.unwrap_or(0),
        0,
        "held connection closed"
    );

    broker.restart().unwrap();
    assert!(broker.is_running());
    assert_eq!(broker.url(), url);
    assert_eq!(broker.ws_urls(), ws_urls);
    assert_ne!(broker.pid(), first_pid);
    assert_eq!(
        connack_code(&mut tcp(&url).await, 5, None).await.unwrap(),
        0
    );

    // Restart of a running broker kills it first.
    let second_pid = broker.pid();
    broker.restart().unwrap();
    assert_ne!(broker.pid(), second_pid);
    assert_eq!(
        connack_code(&mut tcp(&url).await, 4, None).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn mosquitto_restart_waits_for_its_port_to_be_free() {
    let mut broker = Mosquitto::start(MosquittoOptions::new()).unwrap();
    let port = broker.port();
    broker.kill();
    // Someone else holds the port for a moment; restart retries instead of failing.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(squatter);
    });
    broker.restart().unwrap();
    release.join().unwrap();
    assert_eq!(broker.port(), port);
    assert_eq!(
        connack_code(&mut tcp(&broker.url()).await, 5, None)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn mosquitto_password_file_requires_the_credentials() {
    let broker = Mosquitto::start(MosquittoOptions::new().password("alice", "s3cret")).unwrap();
    let url = broker.url();
    let ok = Some(("alice", "s3cret"));
    assert_eq!(connack_code(&mut tcp(&url).await, 4, ok).await.unwrap(), 0);
    // 3.1.1 return code 5 = not authorized; MQTT 5 reason 0x87 = not authorized.
    let bad = Some(("alice", "wrong"));
    assert_eq!(connack_code(&mut tcp(&url).await, 4, bad).await.unwrap(), 5);
    assert_eq!(
        connack_code(&mut tcp(&url).await, 5, None).await.unwrap(),
        0x87
    );
}

fn tls_connector(pki: &TestPki, client_cert: bool) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &std::path::Path| std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let certs = |path| -> Vec<CertificateDer<'static>> {
        rustls_pemfile::certs(&mut read(path))
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&pki.ca) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if client_cert {
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read(&pki.client_key))
            .unwrap()
            .unwrap();
        builder
            .with_client_auth_cert(certs(&pki.client_cert), key)
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connack(url: &str, connector: &tokio_rustls::TlsConnector) -> std::io::Result<u8> {
    let addr = url.strip_prefix("mqtts://").expect("mqtts:// url");
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    connack_code(&mut tls, 5, None).await
}

#[tokio::test]
async fn mosquitto_tls_listener_checks_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let broker = Mosquitto::start(MosquittoOptions::new().tls(pki.server_files(true))).unwrap();
    let url = broker.tls_url().unwrap();
    assert!(url.starts_with("mqtts://127.0.0.1:"), "{url}");

    let with_cert = tls_connector(&pki, true);
    assert_eq!(tls_connack(&url, &with_cert).await.unwrap(), 0);
    let without_cert = tls_connector(&pki, false);
    assert!(
        tls_connack(&url, &without_cert).await.is_err(),
        "a client without certificate must be refused"
    );
    // The plain listener keeps working next to the TLS one.
    assert_eq!(
        connack_code(&mut tcp(&broker.url()).await, 5, None)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn mosquitto_reports_a_bad_config_with_its_log() {
    let err =
        Mosquitto::start(MosquittoOptions::new().config_line("no_such_option 1")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("no_such_option"), "{msg}");
}

#[tokio::test]
async fn embedded_broker_serves_mqtt_on_its_url() {
    let broker = Embedded::start_with_ws().await.unwrap();
    assert!(broker.url().starts_with("mqtt://127.0.0.1:"));
    let ws_url = broker.ws_url().unwrap();
    assert!(ws_url.starts_with("ws://127.0.0.1:") && ws_url.ends_with("/mqtt"));
    assert_eq!(
        connack_code(&mut tcp(&broker.url()).await, 5, None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        connack_code(&mut tcp(&broker.url()).await, 4, None)
            .await
            .unwrap(),
        0
    );

    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::binary(connect_packet(5, "ws-embedded", None)))
        .await
        .unwrap();
    let data = timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data();
    assert_eq!(data[0], 0x20, "expected CONNACK, got {data:?}");
    broker.stop().await;
}

#[tokio::test]
async fn wait_until_sees_a_broker_come_back() {
    let mut broker = Mosquitto::start(MosquittoOptions::new()).unwrap();
    let addr = broker.url().trim_start_matches("mqtt://").to_string();
    broker.kill();
    broker.restart().unwrap();
    rr_testkit::wait_until_async(WAIT, "mosquitto accepting again", || {
        let addr = addr.clone();
        async move { TcpStream::connect(addr).await.is_ok() }
    })
    .await
    .unwrap();
}
