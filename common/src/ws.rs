//! The client side of WebSocket (RFC 6455) as MQTT needs it, with no buffer of its own: the
//! upgrade handshake; an [`Unframer`] that turns the frames of each read into the MQTT byte
//! stream in place (binary payloads kept, headers and control frames taken out, a ping answered
//! by a pong for the writer to send); and [`frame`], which wraps what we send in masked binary
//! frames. MQTT over WebSocket is a byte stream, so message boundaries do not matter: payload
//! bytes are handed on as they arrive (a fragmented message is just more bytes), and a packet too
//! large for the MQTT reader is skipped by it as it arrives, however large the message.

use bytes::{BufMut, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// The largest upgrade response we read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why an upgrade failed.
#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    /// The server answered, but not with an upgrade we accept.
    Refused(String),
}

/// Asks the server behind `stream` to upgrade `path` on `host` (the URL's authority) to a
/// WebSocket speaking `mqtt`. Returns the bytes the server sent after its answer (frames).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> Result<BytesMut, HandshakeError> {
    let key = generate_key();
    let path = if path.is_empty() { "/" } else { path };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(HandshakeError::Io)?;
    stream.flush().await.map_err(HandshakeError::Io)?;
    let mut buf = BytesMut::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(HandshakeError::Refused(format!(
                "no end of the HTTP response within {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        buf.reserve(1024);
        match stream.read_buf(&mut buf).await {
            Ok(0) => {
                return Err(HandshakeError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the WebSocket upgrade",
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    };
    let head = buf.split_to(head_len);
    check_response(&head, &key).map_err(HandshakeError::Refused)?;
    Ok(buf)
}

/// Checks the server's answer to an upgrade request with `key`.
fn check_response(head: &[u8], key: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "101" {
        return Err(format!("HTTP error: {}", status.trim()));
    }
    let mut accept = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("upgrade")
                && !value.eq_ignore_ascii_case("websocket")
            {
                return Err(format!("upgrade to '{value}' instead of websocket"));
            }
        }
    }
    match accept {
        Some(a) if a == derive_accept_key(key.as_bytes()) => Ok(()),
        Some(a) => Err(format!("wrong Sec-WebSocket-Accept '{a}'")),
        None => Err("no Sec-WebSocket-Accept in the answer".into()),
    }
}

/// Appends `payload` to `out` as one masked frame (client frames are masked) with opcode `op`.
pub fn frame(out: &mut BytesMut, op: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(len + 14);
    out.put_u8(0x80 | op);
    if len < 126 {
        out.put_u8(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(0x80 | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(0x80 | 127);
        out.put_u64(len as u64);
    }
    let mask: [u8; 4] = rand::random();
    out.put_slice(&mask);
    let start = out.len();
    out.put_slice(payload);
    apply_mask(&mut out[start..], mask);
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// What the payload of the frame being read is.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// A binary message's bytes: handed on.
    #[default]
    Data,
    /// A text message's bytes: MQTT never sends text; dropped.
    Skip,
    /// A control frame's (opcode): collected, then acted on.
    Control(u8),
}

/// The read state of one WebSocket: a few dozen bytes while idle, whatever arrives.
#[derive(Debug, Default)]
pub struct Unframer {
    /// The header of a frame, while it has not fully arrived.
    head: [u8; 14],
    head_len: u8,
    /// Payload bytes of the current frame still to come.
    left: u64,
    kind: Kind,
    /// The message being read is text (its continuations are dropped too).
    text: bool,
    /// The payload of the control frame being read (at most 125 bytes).
    control: Vec<u8>,
    /// A frame to send back (the pong to the last ping, or our close answering the server's).
    reply: Option<Bytes>,
    /// The server sent close: nothing after it counts.
    closed: bool,
}

impl Unframer {
    /// The server closed the WebSocket.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// A frame waits for the writer.
    pub fn has_reply(&self) -> bool {
        self.reply.is_some()
    }

    /// A frame the writer must send (a pong, or the answer to a close).
    pub fn take_reply(&mut self) -> Option<Bytes> {
        self.reply.take()
    }

    /// Unframes `buf[start..]` (bytes just read) in place: binary payload bytes stay, moved
    /// down over the headers; headers, text and control frames are taken out. An error means the
    /// stream is not WebSocket as a server speaks it to us (masked or extended frames, an unknown
    /// opcode, a malformed control frame): the connection is reset.
    pub fn unframe(&mut self, buf: &mut BytesMut, start: usize) -> io::Result<()> {
        let end = buf.len();
        let (mut r, mut w) = (start, start);
        while r < end && !self.closed {
            if self.left > 0 {
                let n = (end - r).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                match self.kind {
                    Kind::Data => {
                        buf.copy_within(r..r + n, w);
                        w += n;
                    }
                    Kind::Skip => {}
                    Kind::Control(_) => self.control.extend_from_slice(&buf[r..r + n]),
                }
                r += n;
                self.left -= n as u64;
                if self.left == 0 {
                    if let Kind::Control(op) = self.kind {
                        self.control_done(op);
                    }
                }
                continue;
            }
            // A header, perhaps continued from the last read.
            let mut hl = usize::from(self.head_len);
            loop {
                let need = header_len(&self.head[..hl]);
                if hl == need || r == end {
                    break;
                }
                let take = (need - hl).min(end - r);
                self.head[hl..hl + take].copy_from_slice(&buf[r..r + take]);
                hl += take;
                r += take;
            }
            if hl < header_len(&self.head[..hl]) {
                self.head_len = hl as u8;
                break;
            }
            self.head_len = 0;
            self.begin_frame(hl)?;
        }
        buf.truncate(w);
        Ok(())
    }

    fn begin_frame(&mut self, hl: usize) -> io::Result<()> {
        let h = &self.head[..hl];
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        if h[0] & 0x70 != 0 {
            return Err(bad("WebSocket frame with reserved bits set".into()));
        }
        if h[1] & 0x80 != 0 {
            return Err(bad("masked WebSocket frame from the server".into()));
        }
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        };
        let fin = h[0] & 0x80 != 0;
        let op = h[0] & 0x0f;
        self.kind = match op {
            OP_BINARY => {
                self.text = false;
                Kind::Data
            }
            OP_TEXT => {
                self.text = true;
                Kind::Skip
            }
            OP_CONTINUATION if self.text => Kind::Skip,
            OP_CONTINUATION => Kind::Data,
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(bad(format!(
                        "WebSocket control frame (opcode {op}) fragmented or over 125 bytes"
                    )));
                }
                Kind::Control(op)
            }
            _ => return Err(bad(format!("unknown WebSocket opcode {op}"))),
        };
        self.left = len;
        if len == 0 {
            if let Kind::Control(op) = self.kind {
                self.control_done(op);
            }
        }
        Ok(())
    }

    fn control_done(&mut self, op: u8) {
        let payload = std::mem::take(&mut self.control);
        let mut out = BytesMut::new();
        match op {
            OP_PING => frame(&mut out, OP_PONG, &payload),
            OP_CLOSE => {
                // answer with the status code only (a reason is optional)
                frame(&mut out, OP_CLOSE, &payload[..payload.len().min(2)]);
                self.closed = true;
            }
            _ => return, // a pong: nothing to do
        }
        self.reply = Some(out.freeze());
    }
}

/// The length of a frame header that starts with `h` (2 until its second byte is known).
fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 {
        return 2;
    }
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
