//! The NATS client protocol, pure and allocation-free on the hot path: server operations
//! (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`) parsed in place from a read buffer,
//! client operations (`CONNECT`, `PING`/`PONG`, `SUB`, `UNSUB`, `PUB`, `HPUB`) encoded into the
//! caller's buffer.
//!
//! # Correlation header
//! A request's correlation travels in one NATS header, `RR-Correlation`, as lowercase hex of the
//! correlation bytes (the 12 bytes of [`crate::codec::Correlation`], so 24 characters):
//!
//! ```text
//! HPUB req.7 resp.host-1.3 54 118\r\n
//! NATS/1.0\r\nRR-Correlation: 0a1b2c3d000000070000002a\r\n\r\n<64 payload bytes>\r\n
//! ```
//!
//! Hex rather than base64: header values are text, hex has one spelling (no alphabet or padding
//! variants to get wrong in another language's client), is read by eye in `nats sub` output
//! (run, client and sequence are visible), and costs 8 bytes more per message than base64,
//! which no figure notices. Decoding accepts either case; header names match case-insensitively
//! (clients differ in how they canonicalise them).
//!
//! # Framing
//! [`next_op`] returns a complete operation, `Ok(None)` when more bytes are needed, or an error.
//! [`NatsError::TooLarge`] carries the length of the oversized frame so a reader can count it
//! and skip its bytes as they arrive, as the MQTT reader does; every other error means the
//! stream is no longer framed and the connection must be reset. A message whose frame is intact
//! but whose header block is malformed is returned as a message: [`Msg::correlation`] reports it,
//! so it is counted as invalid without losing the connection.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Longest control line accepted (nats-server's default `max_control_line` is 4 KiB).
pub const MAX_CONTROL_LINE: usize = 4096;
/// Maximum payload when the server's INFO names none (nats-server's default, 1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Header that carries a request's correlation, echoed by the responder.
pub const CORRELATION_HEADER: &[u8] = b"RR-Correlation";
/// Longest correlation (bytes, before hex) a header may carry; longer ones are invalid.
pub const MAX_CORRELATION: usize = 255;
/// First line of every header block.
pub const HEADER_VERSION: &[u8] = b"NATS/1.0";
/// `PING`, sent by either side.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG`, the answer to a `PING`.
pub const PONG: &[u8] = b"PONG\r\n";

/// Why bytes could not be parsed or an operation not encoded. `Copy`, so a hot path can count
/// kinds without allocating.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Error)]
pub enum NatsError {
    #[error("control line longer than {MAX_CONTROL_LINE} bytes")]
    ControlLineTooLong,
    #[error("control line not ended by CRLF")]
    BadLineEnd,
    #[error("unknown protocol operation")]
    UnknownOp,
    #[error("malformed arguments")]
    BadArgs,
    #[error("malformed number")]
    BadNumber,
    #[error("message not ended by CRLF")]
    BadTerminator,
    /// The announced message exceeds the maximum payload; its frame is `.0` bytes long.
    #[error("message of {0} bytes exceeds the maximum payload")]
    TooLarge(usize),
    #[error("malformed header block")]
    BadHeader,
    #[error("malformed correlation header")]
    BadCorrelation,
    #[error("payload exceeds the server's maximum payload")]
    PayloadTooLarge,
    #[error("malformed INFO")]
    BadInfo,
}

/// The server's `INFO` (the fields a client acts on; others are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    /// Whether the server supports headers (`HPUB`/`HMSG`).
    pub headers: bool,
    /// Largest message (headers and payload) the server accepts; 0 when unset.
    pub max_payload: usize,
    pub auth_required: bool,
    pub tls_required: bool,
    pub tls_available: bool,
    /// Lame-duck mode: the server is about to shut down.
    #[serde(rename = "ldm")]
    pub lame_duck: bool,
    pub connect_urls: Vec<String>,
}

impl ServerInfo {
    /// The maximum message size to respect when publishing.
    pub fn max_payload(&self) -> usize {
        if self.max_payload == 0 {
            DEFAULT_MAX_PAYLOAD
        } else {
            self.max_payload
        }
    }
}

/// Parses the JSON of an `INFO` operation (as returned in [`Op::Info`]).
pub fn parse_info(json: &[u8]) -> Result<ServerInfo, NatsError> {
    serde_json::from_slice(json).map_err(|_| NatsError::BadInfo)
}

/// What a client sends in `CONNECT`. `Debug` never shows the password.
#[derive(Clone, Default)]
pub struct Connect<'a> {
    /// Client name, shown by the server's monitoring.
    pub name: &'a str,
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
    /// The client runs TLS.
    pub tls_required: bool,
}

impl std::fmt::Debug for Connect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("pass", &self.pass.map(|_| "<redacted>"))
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

#[derive(serde::Serialize)]
struct ConnectJson<'a> {
    verbose: bool,
    pedantic: bool,
    tls_required: bool,
    name: &'a str,
    lang: &'static str,
    version: &'static str,
    protocol: u8,
    headers: bool,
    no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<&'a str>,
}

/// Appends `CONNECT {json}\r\n`: not verbose (no `+OK` per operation), not pedantic, headers
/// on, no-responders off, protocol 1 (the server may send `INFO` updates at any time).
pub fn encode_connect(buf: &mut BytesMut, c: &Connect<'_>) {
    let json = ConnectJson {
        verbose: false,
        pedantic: false,
        tls_required: c.tls_required,
        name: c.name,
        lang: "rust",
        version: env!("CARGO_PKG_VERSION"),
        protocol: 1,
        headers: true,
        no_responders: false,
        user: c.user,
        pass: c.pass,
    };
    buf.put_slice(b"CONNECT ");
    // Serializing plain strings and bools into memory cannot fail.
    let text = serde_json::to_vec(&json).unwrap_or_default();
    buf.put_slice(&text);
    buf.put_slice(b"\r\n");
}

/// Appends `SUB <subject> [queue] <sid>\r\n`.
pub fn encode_sub(buf: &mut BytesMut, subject: &[u8], queue: Option<&[u8]>, sid: u64) {
    buf.put_slice(b"SUB ");
    buf.put_slice(subject);
    if let Some(q) = queue {
        buf.put_u8(b' ');
        buf.put_slice(q);
    }
    buf.put_u8(b' ');
    put_decimal(buf, sid as usize);
    buf.put_slice(b"\r\n");
}

/// Appends `UNSUB <sid> [max_msgs]\r\n`.
pub fn encode_unsub(buf: &mut BytesMut, sid: u64, max_msgs: Option<u64>) {
    buf.put_slice(b"UNSUB ");
    put_decimal(buf, sid as usize);
    if let Some(m) = max_msgs {
        buf.put_u8(b' ');
        put_decimal(buf, m as usize);
    }
    buf.put_slice(b"\r\n");
}

/// An outgoing message, borrowed: nothing is copied until it is encoded into a buffer.
#[derive(Copy, Clone, Debug)]
pub struct Publish<'a> {
    /// Subject (validated beforehand, see [`super::subject`]).
    pub subject: &'a [u8],
    /// Reply subject the responder answers on.
    pub reply: Option<&'a [u8]>,
    /// Correlation bytes: sent hex-encoded in the [`CORRELATION_HEADER`] (an `HPUB`); `None`
    /// sends a plain `PUB`.
    pub correlation: Option<&'a [u8]>,
    /// Payload, as consecutive pieces.
    pub payload: &'a [&'a [u8]],
}

/// Bytes of the header block that carries a correlation of `correlation_len` bytes:
/// `NATS/1.0\r\n` + `RR-Correlation: ` + hex + `\r\n` + `\r\n`.
pub const fn header_block_len(correlation_len: usize) -> usize {
    HEADER_VERSION.len() + 2 + CORRELATION_HEADER.len() + 2 + 2 * correlation_len + 2 + 2
}

/// Appends one `PUB` (no correlation) or `HPUB` (correlation in a header) to `buf`. Returns the
/// bytes appended. Refuses, appending nothing, a message larger than `max_payload` (the
/// server's, from INFO: it would close the connection) or a correlation longer than
/// [`MAX_CORRELATION`].
pub fn encode_publish(
    buf: &mut BytesMut,
    p: &Publish<'_>,
    max_payload: usize,
) -> Result<usize, NatsError> {
    let payload_len: usize = p.payload.iter().map(|s| s.len()).sum();
    let header_len = match p.correlation {
        Some(c) if c.len() > MAX_CORRELATION => return Err(NatsError::BadCorrelation),
        Some(c) => header_block_len(c.len()),
        None => 0,
    };
    let total = header_len + payload_len;
    if total > max_payload {
        return Err(NatsError::PayloadTooLarge);
    }
    let start = buf.len();
    let line = 5 + p.subject.len() + p.reply.map_or(0, |r| r.len() + 1) + 2 * 21 + 2;
    buf.reserve(line + total + 2);
    buf.put_slice(if header_len > 0 { b"HPUB " } else { b"PUB " });
    buf.put_slice(p.subject);
    if let Some(r) = p.reply {
        buf.put_u8(b' ');
        buf.put_slice(r);
    }
    buf.put_u8(b' ');
    if header_len > 0 {
        put_decimal(buf, header_len);
        buf.put_u8(b' ');
    }
    put_decimal(buf, total);
    buf.put_slice(b"\r\n");
    if let Some(c) = p.correlation {
        buf.put_slice(HEADER_VERSION);
        buf.put_slice(b"\r\n");
        buf.put_slice(CORRELATION_HEADER);
        buf.put_slice(b": ");
        put_hex(buf, c);
        buf.put_slice(b"\r\n\r\n");
    }
    for piece in p.payload {
        buf.put_slice(piece);
    }
    buf.put_slice(b"\r\n");
    Ok(buf.len() - start)
}

/// Decimal digits of `v` without allocating.
fn put_decimal(buf: &mut BytesMut, mut v: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(buf: &mut BytesMut, bytes: &[u8]) {
    for &b in bytes {
        buf.put_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex `text` into `out`, returning the decoded bytes; `None` for odd length, a
/// non-hex character, or more than `out` holds.
pub fn decode_hex<'b>(text: &[u8], out: &'b mut [u8]) -> Option<&'b [u8]> {
    if !text.len().is_multiple_of(2) || text.len() / 2 > out.len() {
        return None;
    }
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(&out[..text.len() / 2])
}

/// One server operation, borrowed from the read buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `INFO`: the JSON text (see [`parse_info`]).
    Info(&'a [u8]),
    /// `MSG` or `HMSG`.
    Msg(Msg<'a>),
    Ping,
    Pong,
    /// `+OK` (only in verbose mode, which we do not ask for).
    Ok,
    /// `-ERR`: the server's message without its quotes, e.g. `Authorization Violation`.
    Err(&'a [u8]),
}

/// A delivered message (`MSG` or `HMSG`), borrowed from the read buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    pub subject: &'a [u8],
    /// The subscription id the client gave in `SUB`.
    pub sid: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The header block as received (`NATS/1.0\r\n...\r\n\r\n`); empty for `MSG`.
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// The correlation carried in [`CORRELATION_HEADER`], decoded into `out`; `Ok(None)` when
    /// the message has no headers or not that one. A malformed header block or value is an error
    /// (the message is invalid; the connection is fine).
    pub fn correlation<'b>(
        &self,
        out: &'b mut [u8; MAX_CORRELATION],
    ) -> Result<Option<&'b [u8]>, NatsError> {
        if self.headers.is_empty() {
            return Ok(None);
        }
        match Headers::parse(self.headers)?.get(CORRELATION_HEADER) {
            None => Ok(None),
            Some(v) => decode_hex(v, out)
                .map(Some)
                .ok_or(NatsError::BadCorrelation),
        }
    }
}

/// A validated header block.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Headers<'a> {
    /// The first line after `NATS/1.0` (e.g. ` 503`), trimmed.
    status_line: &'a [u8],
    /// Header lines, each ended by CRLF.
    fields: &'a [u8],
}

impl<'a> Headers<'a> {
    /// Checks the block's shape: `NATS/1.0[ status]\r\n` then `Name: value\r\n` lines, then `\r\n`.
    pub fn parse(block: &'a [u8]) -> Result<Headers<'a>, NatsError> {
        // After the version: the status line and each field line end with CRLF, and an empty
        // line (one more CRLF) ends the block.
        let body = block
            .strip_prefix(HEADER_VERSION)
            .and_then(|rest| rest.strip_suffix(b"\r\n"))
            .ok_or(NatsError::BadHeader)?;
        let eol = find_crlf(body).ok_or(NatsError::BadHeader)?;
        let (status, fields) = (&body[..eol], &body[eol + 2..]);
        let field_lines_ok = fields
            .strip_suffix(b"\n")
            .unwrap_or(fields)
            .split(|&b| b == b'\n')
            .all(|l| l.strip_suffix(b"\r").is_some_and(|l| l.contains(&b':')));
        let fields_ok = fields.is_empty() || (fields.ends_with(b"\r\n") && field_lines_ok);
        let status_ok = status.is_empty() || status.starts_with(b" ");
        if !fields_ok || !status_ok || status.contains(&b'\n') || status.contains(&b'\r') {
            return Err(NatsError::BadHeader);
        }
        Ok(Headers {
            status_line: trim(status),
            fields,
        })
    }

    /// The status code (`NATS/1.0 503` → 503), when the server set one.
    pub fn status(&self) -> Option<u16> {
        let code = self.status_line.split(|&b| b == b' ').next()?;
        parse_usize(code).ok().and_then(|v| u16::try_from(v).ok())
    }

    /// The first value of header `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.fields
            .split(|&b| b == b'\n')
            .filter_map(|l| l.strip_suffix(b"\r"))
            .find_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                trim(&line[..colon])
                    .eq_ignore_ascii_case(name)
                    .then(|| trim(&line[colon + 1..]))
            })
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn parse_usize(s: &[u8]) -> Result<usize, NatsError> {
    if s.is_empty() || s.len() > 19 {
        return Err(NatsError::BadNumber);
    }
    s.iter().try_fold(0usize, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + usize::from(c - b'0'))
        } else {
            Err(NatsError::BadNumber)
        }
    })
}

/// Splits a control line's arguments on spaces and tabs into `out`; returns how many.
fn split_args<'a>(line: &'a [u8], out: &mut [&'a [u8]; 5]) -> Result<usize, NatsError> {
    let mut n = 0;
    for arg in line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|a| !a.is_empty())
    {
        if n == out.len() {
            return Err(NatsError::BadArgs);
        }
        out[n] = arg;
        n += 1;
    }
    Ok(n)
}

/// Parses one server operation at the start of `buf`: `Ok(Some((op, len)))` with the bytes it
/// took, `Ok(None)` when more bytes are needed, or an error (see the module docs on framing).
/// Messages whose headers and payload exceed `max_payload` are [`NatsError::TooLarge`].
pub fn next_op(buf: &[u8], max_payload: usize) -> Result<Option<(Op<'_>, usize)>, NatsError> {
    let window = &buf[..buf.len().min(MAX_CONTROL_LINE + 2)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() > MAX_CONTROL_LINE + 1 {
            Err(NatsError::ControlLineTooLong)
        } else {
            Ok(None)
        };
    };
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(NatsError::BadLineEnd);
    }
    let line = &buf[..nl - 1];
    let line_len = nl + 1;
    let verb_end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (verb, rest) = line.split_at(verb_end);
    let bare = |op: Op<'static>| {
        if trim(rest).is_empty() {
            Ok(Some((op, line_len)))
        } else {
            Err(NatsError::BadArgs)
        }
    };
    if verb.eq_ignore_ascii_case(b"MSG") || verb.eq_ignore_ascii_case(b"HMSG") {
        let with_headers = verb.len() == 4;
        let mut a = [&b""[..]; 5];
        let n = split_args(rest, &mut a)?;
        let (subject, sid, reply, hdr, total) = match (with_headers, n) {
            (false, 3) => (a[0], a[1], None, None, a[2]),
            (false, 4) => (a[0], a[1], Some(a[2]), None, a[3]),
            (true, 4) => (a[0], a[1], None, Some(a[2]), a[3]),
            (true, 5) => (a[0], a[1], Some(a[2]), Some(a[3]), a[4]),
            _ => return Err(NatsError::BadArgs),
        };
        let total = parse_usize(total)?;
        let hdr = hdr.map(parse_usize).transpose()?.unwrap_or(0);
        if hdr > total {
            return Err(NatsError::BadArgs);
        }
        let frame_len = line_len
            .checked_add(total)
            .and_then(|v| v.checked_add(2))
            .ok_or(NatsError::BadNumber)?;
        if total > max_payload {
            return Err(NatsError::TooLarge(frame_len));
        }
        if buf.len() < frame_len {
            return Ok(None);
        }
        if &buf[frame_len - 2..frame_len] != b"\r\n" {
            return Err(NatsError::BadTerminator);
        }
        let body = &buf[line_len..line_len + total];
        let msg = Msg {
            subject,
            sid,
            reply,
            headers: &body[..hdr],
            payload: &body[hdr..],
        };
        return Ok(Some((Op::Msg(msg), frame_len)));
    }
    if verb.eq_ignore_ascii_case(b"PING") {
        return bare(Op::Ping);
    }
    if verb.eq_ignore_ascii_case(b"PONG") {
        return bare(Op::Pong);
    }
    if verb.eq_ignore_ascii_case(b"+OK") {
        return bare(Op::Ok);
    }
    if verb.eq_ignore_ascii_case(b"-ERR") {
        let text = trim(rest);
        let text = text
            .strip_prefix(b"'")
            .and_then(|t| t.strip_suffix(b"'"))
            .unwrap_or(text);
        return Ok(Some((Op::Err(text), line_len)));
    }
    if verb.eq_ignore_ascii_case(b"INFO") {
        let json = trim(rest);
        if json.is_empty() {
            return Err(NatsError::BadArgs);
        }
        return Ok(Some((Op::Info(json), line_len)));
    }
    Err(NatsError::UnknownOp)
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
