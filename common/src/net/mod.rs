//! Byte transports to a broker: TCP, TLS (rustls with ring), WebSocket and WebSocket over TLS
//! (framed by `crate::ws`), each split into a reader and a writer half so one task can drive
//! both.

#[cfg(target_os = "linux")]
pub mod stamped;

use crate::broker::{BrokerUrl, ConnectOptions};
use crate::ws::{self, HandshakeError, Unframer};
use bytes::{Bytes, BytesMut};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Any byte stream (plain TCP or TLS).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}
type BoxStream = Box<dyn ByteStream>;

/// Why a transport could not be opened. `is_final` tells whether retrying can help.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    #[error("TLS handshake with {addr} failed: {source}{}", self.hint())]
    Tls { addr: String, source: io::Error },
    #[error("WebSocket handshake with {url} failed: {reason}")]
    WebSocket { url: String, reason: String },
    #[error("connect to {0} timed out")]
    Timeout(String),
}

impl TransportError {
    /// Errors that the same attempt later cannot fix (bad certificates, bad TLS files).
    pub fn is_final(&self) -> bool {
        match self {
            TransportError::TlsConfig(_) => true,
            TransportError::Tls { source, .. } => rustls_error(source).is_some_and(|e| {
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(_)
                        | rustls::Error::NoCertificatesPresented
                        | rustls::Error::PeerIncompatible(_)
                ) || matches!(e, rustls::Error::AlertReceived(a)
                    if !matches!(a, rustls::AlertDescription::CloseNotify | rustls::AlertDescription::UserCanceled))
            }),
            _ => false,
        }
    }

    /// What to check, for the error line of a failed start.
    fn hint(&self) -> &'static str {
        let TransportError::Tls { source, .. } = self else {
            return "";
        };
        match rustls_error(source) {
            Some(rustls::Error::InvalidCertificate(_)) => {
                " (the broker's certificate is not trusted: check TLS_CA_FILE, or TLS_INSECURE for tests)"
            }
            Some(rustls::Error::AlertReceived(_) | rustls::Error::NoCertificatesPresented) => {
                " (the broker refused the TLS session, often our client certificate: check TLS_CERT_FILE and TLS_KEY_FILE)"
            }
            _ => "",
        }
    }
}

/// The rustls error inside an I/O error, looking through WebSocket and I/O wrappers.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|e| e as _);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        cur = if let Some(io) = err.downcast_ref::<io::Error>() {
            io.get_ref().map(|e| e as _)
        } else if let Some(tokio_tungstenite::tungstenite::Error::Io(io)) =
            err.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        {
            io.get_ref().map(|e| e as _)
        } else {
            err.source()
        };
    }
    None
}

/// Builds the rustls client configuration from the options (CA file, client cert, insecure).
pub fn tls_config(opts: &ConnectOptions) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let read_certs =
        |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, TransportError> {
            let data = std::fs::read(path)
                .map_err(|e| TransportError::TlsConfig(format!("{}: {e}", path.display())))?;
            rustls_pemfile::certs(&mut &data[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TransportError::TlsConfig(format!("{}: {e}", path.display())))
        };
    let mut roots = rustls::RootCertStore::empty();
    let ca_path = opts.tls_ca_file.clone().or_else(|| {
        let sys = std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        sys.is_file().then_some(sys)
    });
    if let Some(ca) = &ca_path {
        for cert in read_certs(ca)? {
            roots
                .add(cert)
                .map_err(|e| TransportError::TlsConfig(format!("{}: {e}", ca.display())))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
    let builder = if opts.tls_insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let config = match (&opts.tls_cert_file, &opts.tls_key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert)?;
            let data = std::fs::read(key)
                .map_err(|e| TransportError::TlsConfig(format!("{}: {e}", key.display())))?;
            let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &data[..])
                .map_err(|e| TransportError::TlsConfig(format!("{}: {e}", key.display())))?
                .ok_or_else(|| {
                    TransportError::TlsConfig(format!("{}: no private key found", key.display()))
                })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| TransportError::TlsConfig(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

mod insecure {
    //! A verifier that accepts any server certificate (TLS_INSECURE=true).
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// Read half of a transport.
pub enum WireReader {
    /// Plain TCP, unboxed: its write half can be shared for direct writes (see `outlet`).
    Tcp(OwnedReadHalf),
    Stream(ReadHalf<BoxStream>),
    /// Boxed: a connection's task holds its reader inline, and most connections are not WebSocket.
    Ws(Box<WsReader>),
    /// Plain TCP read at an engine's tick, with the kernel's receive timestamps (boxed: its
    /// scratch buffer and wake-up are few connections' business).
    #[cfg(target_os = "linux")]
    Stamped(Box<stamped::StampedReader>),
}

/// The read half of a WebSocket: its byte stream and the frame state, no buffer of its own.
pub struct WsReader {
    raw: WsRaw,
    frames: Unframer,
    /// Frame bytes that came with the upgrade's answer.
    early: Vec<u8>,
}

enum WsRaw {
    /// Plain TCP: waits for readability before it reads, so an idle socket holds no buffer.
    Tcp(OwnedReadHalf),
    Stream(ReadHalf<BoxStream>),
}

/// Write half of a transport.
pub enum WireWriter {
    Tcp(Arc<TcpOut>),
    Stream(WriteHalf<BoxStream>),
    /// WebSocket over plain TCP / over TLS: what is written goes out in masked binary frames.
    WsTcp(TcpOut),
    WsStream(WriteHalf<BoxStream>),
}

/// A plain TCP socket's write side, written from any task without a lock (non-blocking).
#[derive(Debug)]
pub enum TcpOut {
    /// Registered with the runtime for reading and writing: read when bytes arrive.
    Split(OwnedWriteHalf),
    /// Registered for writing only: read at an engine's tick (see `stamped`).
    #[cfg(target_os = "linux")]
    Stamped(Arc<stamped::StampedTcp>),
}

impl TcpOut {
    /// A non-blocking write; `WouldBlock` when the socket takes nothing now.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            TcpOut::Split(w) => w.try_write(data),
            #[cfg(target_os = "linux")]
            TcpOut::Stamped(s) => s.try_write(data),
        }
    }

    /// Resolves when the socket may take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            TcpOut::Split(w) => w.writable().await,
            #[cfg(target_os = "linux")]
            TcpOut::Stamped(s) => s.writable().await,
        }
    }
}

/// Bytes a read appends to the caller's buffer when the buffer has less room than this.
const READ_ROOM: usize = 4096;
/// What a read reserves then.
pub(crate) const READ_RESERVE: usize = 16 * 1024;

fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(READ_RESERVE);
    }
}

impl WireReader {
    /// Appends received bytes (the MQTT byte stream, WebSocket framing removed) to `buf`.
    /// `Ok(0)` means the peer closed, unless [`WireReader::take_reply`] then has a frame to send
    /// back (a WebSocket ping's pong): write it and read on. Cancel-safe.
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            WireReader::Tcp(r) => {
                make_room(buf);
                r.read_buf(buf).await
            }
            WireReader::Stream(r) => {
                make_room(buf);
                r.read_buf(buf).await
            }
            WireReader::Ws(ws) => ws.read_into(buf).await,
            #[cfg(target_os = "linux")]
            WireReader::Stamped(r) => r.read_into(buf).await,
        }
    }

    /// When the bytes of the last read reached the kernel, if the transport knows (a stamped
    /// reader); else the caller takes the time the read returned.
    pub fn arrival(&self) -> Option<std::time::Instant> {
        match self {
            #[cfg(target_os = "linux")]
            WireReader::Stamped(r) => r.arrival(),
            _ => None,
        }
    }

    /// A frame the transport must send back after a read (a WebSocket pong, or the answer to
    /// the server's close): write it with [`WireWriter::write_frame`].
    pub fn take_reply(&mut self) -> Option<Bytes> {
        match self {
            WireReader::Ws(ws) => ws.frames.take_reply(),
            _ => None,
        }
    }
}

impl WsReader {
    fn new(raw: WsRaw, early: BytesMut) -> WsReader {
        WsReader {
            raw,
            frames: Unframer::default(),
            early: early.to_vec(),
        }
    }

    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            if self.frames.closed() {
                return Ok(0);
            }
            let start = buf.len();
            if !self.early.is_empty() {
                buf.extend_from_slice(&std::mem::take(&mut self.early));
            } else {
                match &mut self.raw {
                    WsRaw::Tcp(r) => {
                        // readiness through the socket's own waker slot: the wait keeps no
                        // waiter of its own in an idle task
                        let tcp: &TcpStream = r.as_ref();
                        std::future::poll_fn(|cx| tcp.poll_read_ready(cx)).await?;
                        match try_read_lean(r, buf) {
                            Ok(0) => return Ok(0),
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    WsRaw::Stream(r) => {
                        make_room(buf);
                        if r.read_buf(buf).await? == 0 {
                            return Ok(0);
                        }
                    }
                }
            }
            self.frames.unframe(buf, start)?;
            let n = buf.len() - start;
            if n > 0 || self.frames.has_reply() {
                return Ok(n);
            }
        }
    }
}

/// Reads what the socket has into `buf` without growing it ahead of the data: an idle
/// connection's readiness can be stale (the last read did not drain to `WouldBlock`), and a buffer
/// reserved for a read that then finds nothing would stay with the idle connection.
fn try_read_lean(r: &OwnedReadHalf, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() >= READ_ROOM {
        return r.try_read_buf(buf);
    }
    let mut scratch = [0u8; READ_RESERVE];
    let n = r.try_read(&mut scratch)?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}

/// Writes all of `data` to a plain TCP socket without a lock (the socket is non-blocking).
async fn tcp_write_all(w: &TcpOut, data: &[u8]) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        match w.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => w.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl WireWriter {
    /// The plain-TCP socket, for writes from other tasks (`None` for TLS and WebSocket).
    pub fn direct(&self) -> Option<Arc<TcpOut>> {
        match self {
            WireWriter::Tcp(w) => Some(w.clone()),
            _ => None,
        }
    }

    /// Writes `data` (whole protocol packets; on WebSocket one binary frame).
    pub async fn write_all(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            WireWriter::Tcp(w) => tcp_write_all(w, &data).await,
            WireWriter::Stream(w) => w.write_all(&data).await,
            WireWriter::WsTcp(_) | WireWriter::WsStream(_) => {
                let mut f = BytesMut::new();
                ws::frame(&mut f, ws::OP_BINARY, &data);
                self.write_frame(f.freeze()).await
            }
        }
    }

    /// Writes bytes as they are: a frame from [`WireReader::take_reply`].
    pub async fn write_frame(&mut self, frame: Bytes) -> io::Result<()> {
        match self {
            WireWriter::Tcp(w) => tcp_write_all(w, &frame).await,
            WireWriter::WsTcp(w) => tcp_write_all(w, &frame).await,
            WireWriter::Stream(w) | WireWriter::WsStream(w) => {
                w.write_all(&frame).await?;
                w.flush().await
            }
        }
    }

    pub async fn shutdown(&mut self) {
        match self {
            // Shut down when the last handle drops (the outlet lets go when the session ends).
            WireWriter::Tcp(_) => {}
            WireWriter::Stream(w) => {
                let _ = w.shutdown().await;
            }
            WireWriter::WsTcp(_) | WireWriter::WsStream(_) => {
                // a close frame with status 1000 (normal closure), then the stream's shutdown
                let mut f = BytesMut::new();
                ws::frame(&mut f, ws::OP_CLOSE, &1000u16.to_be_bytes());
                let _ = self.write_frame(f.freeze()).await;
                match self {
                    WireWriter::WsTcp(TcpOut::Split(w)) => {
                        let _ = w.shutdown().await;
                    }
                    WireWriter::WsStream(w) => {
                        let _ = w.shutdown().await;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Connects TCP to `url`'s host and port (from `bind` when given), with `TCP_NODELAY`.
pub async fn tcp_connect(
    url: &BrokerUrl,
    bind: Option<IpAddr>,
) -> Result<TcpStream, TransportError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(url.authority())
        .await
        .map_err(|_| TransportError::Resolve(url.authority()))?
        .collect();
    let mut last = None;
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| TransportError::Connect {
            addr: addr.to_string(),
            source: e,
        })?;
        if let Some(ip) = bind {
            if let Err(e) = socket.bind(SocketAddr::new(ip, 0)) {
                last = Some(TransportError::Connect {
                    addr: format!("{addr} (from {ip})"),
                    source: e,
                });
                continue;
            }
        }
        match socket.connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                last = Some(TransportError::Connect {
                    addr: addr.to_string(),
                    source: e,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| TransportError::Resolve(url.authority())))
}

/// Upgrades `stream` to a WebSocket for `url`; returns the frame bytes that came with the
/// answer.
async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    url: &BrokerUrl,
) -> Result<BytesMut, TransportError> {
    ws::handshake(stream, &url.authority(), &url.path)
        .await
        .map_err(|e| match e {
            // with TLS 1.3 a refused client certificate shows up here, as an alert
            HandshakeError::Io(source) if rustls_error(&source).is_some() => TransportError::Tls {
                addr: url.authority(),
                source,
            },
            HandshakeError::Io(source) => TransportError::Connect {
                addr: url.authority(),
                source,
            },
            HandshakeError::Refused(reason) => TransportError::WebSocket {
                url: url.ws_url(),
                reason,
            },
        })
}

/// Opens the byte stream named by `url` (no broker protocol traffic yet; a WebSocket is
/// upgraded).
pub async fn open(
    url: &BrokerUrl,
    opts: &ConnectOptions,
    tls: Option<&Arc<rustls::ClientConfig>>,
    bind: Option<IpAddr>,
) -> Result<(WireReader, WireWriter), TransportError> {
    over(tcp_connect(url, bind).await?, url, opts, tls).await
}

/// The byte stream `url` names, over an open TCP connection: as it is, with TLS, WebSocket, or
/// both. (NATS reads the server's INFO from the plain socket before it upgrades to TLS.)
pub async fn over(
    mut tcp: TcpStream,
    url: &BrokerUrl,
    opts: &ConnectOptions,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(WireReader, WireWriter), TransportError> {
    if !url.scheme.is_tls() {
        if url.scheme.is_ws() {
            let early = ws_upgrade(&mut tcp, url).await?;
            let (r, w) = tcp.into_split();
            let reader = Box::new(WsReader::new(WsRaw::Tcp(r), early));
            return Ok((WireReader::Ws(reader), WireWriter::WsTcp(TcpOut::Split(w))));
        }
        let (r, w) = tcp.into_split();
        return Ok((
            WireReader::Tcp(r),
            WireWriter::Tcp(Arc::new(TcpOut::Split(w))),
        ));
    }
    let config = match tls {
        Some(c) => c.clone(),
        None => tls_config(opts)?,
    };
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| TransportError::TlsConfig(format!("server name {}: {e}", url.host)))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| TransportError::Tls {
            addr: url.authority(),
            source: e,
        })?;
    let mut stream: BoxStream = Box::new(tls);
    if url.scheme.is_ws() {
        let early = ws_upgrade(&mut stream, url).await?;
        let (r, w) = tokio::io::split(stream);
        let reader = Box::new(WsReader::new(WsRaw::Stream(r), early));
        return Ok((WireReader::Ws(reader), WireWriter::WsStream(w)));
    }
    let (r, w) = tokio::io::split(stream);
    Ok((WireReader::Stream(r), WireWriter::Stream(w)))
}
