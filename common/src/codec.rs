//! Wire format, with no I/O: request correlation, the MQTT 3.1.1 payload header, and the
//! allocation-free PUBLISH encoder/decoder used on the hot path of loadgen and worker.
//!
//! # Correlation (12 bytes, big endian)
//! `run: u32` (random per loadgen process, so replies to an earlier run are rejected),
//! `client: u32` (virtual client index), `seq: u32` (per-client request sequence).
//! With MQTT 5 these bytes travel in the standard Correlation Data property and the reply topic
//! in the Response Topic property, so any MQTT 5 requester interoperates with the worker.
//!
//! # MQTT 3.1.1 payload header
//! MQTT 3.1.1 has no properties, so the requester prefixes the payload with:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `b"RR"` (0x52 0x52) |
//! | 2 | 1 | header version, `1` |
//! | 3 | 2 | reply topic length `L`, u16 big endian (0 in responses) |
//! | 5 | L | reply topic, UTF-8 |
//! | 5+L | 1 | correlation length `C` (0..=255) |
//! | 6+L | C | correlation bytes (opaque to the worker, echoed back) |
//! | 6+L+C | … | body |
//!
//! The worker answers with the same header (reply topic length 0, same correlation) followed by
//! its response body.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Length of the correlation bytes produced by [`Correlation::to_bytes`].
pub const CORRELATION_LEN: usize = 12;
/// Magic bytes that open a 3.1.1 payload header.
pub const HEADER_MAGIC: [u8; 2] = *b"RR";
/// Version byte of the 3.1.1 payload header.
pub const HEADER_VERSION: u8 = 1;

/// Identifies one request: the run, the virtual client and its sequence number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Correlation {
    pub run: u32,
    pub client: u32,
    pub seq: u32,
}

impl Correlation {
    pub fn to_bytes(self) -> [u8; CORRELATION_LEN] {
        let mut out = [0u8; CORRELATION_LEN];
        out[0..4].copy_from_slice(&self.run.to_be_bytes());
        out[4..8].copy_from_slice(&self.client.to_be_bytes());
        out[8..12].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
        if b.len() != CORRELATION_LEN {
            return Err(CodecError::BadCorrelation);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Correlation {
            run: word(0),
            client: word(4),
            seq: word(8),
        })
    }
}

/// Why bytes could not be decoded. `Copy`, so hot paths can count kinds without allocating.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("malformed remaining length")]
    BadLength,
    #[error("packet larger than the allowed maximum")]
    TooLarge,
    #[error("packet truncated")]
    Truncated,
    #[error("malformed PUBLISH")]
    BadPublish,
    #[error("unknown or malformed property")]
    BadProperty,
    #[error("missing or malformed payload header")]
    BadHeader,
    #[error("missing reply topic")]
    NoReplyTopic,
    #[error("correlation has the wrong length")]
    BadCorrelation,
    #[error("unexpected packet type")]
    UnexpectedPacket,
}

/// MQTT protocol level of a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// MQTT 3.1.1
    V4,
    /// MQTT 5
    V5,
}

/// A decoded MQTT fixed header: packet type nibble, flags, and where the frame ends.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub first_byte: u8,
    /// Bytes taken by the fixed header (1 + length bytes).
    pub header_len: usize,
    /// Bytes of the whole frame (header + remaining length).
    pub total_len: usize,
}

impl Frame {
    pub fn packet_type(&self) -> u8 {
        self.first_byte >> 4
    }
}

/// Looks for one complete MQTT frame at the start of `buf`.
/// `Ok(None)` means more bytes are needed.
pub fn next_frame(buf: &[u8], max_len: usize) -> Result<Option<Frame>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut len: usize = 0;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return if i > 4 {
                Err(CodecError::BadLength)
            } else {
                Ok(None)
            };
        };
        len |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if i > 4 {
            return Err(CodecError::BadLength);
        }
    }
    if len > max_len {
        return Err(CodecError::TooLarge);
    }
    let total = i + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        first_byte: buf[0],
        header_len: i,
        total_len: total,
    }))
}

fn put_varint(buf: &mut BytesMut, mut v: usize) {
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if v == 0 {
            break;
        }
    }
}

fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// An outgoing PUBLISH, borrowed: nothing is copied until it is encoded into a buffer.
#[derive(Copy, Clone, Debug)]
pub struct OutPublish<'a> {
    pub topic: &'a [u8],
    /// 0 or 1.
    pub qos: u8,
    /// Packet identifier (only used when qos > 0).
    pub pkid: u16,
    /// MQTT 5 Response Topic property.
    pub response_topic: Option<&'a [u8]>,
    /// MQTT 5 Correlation Data property.
    pub correlation: Option<&'a [u8]>,
    /// Payload, as consecutive pieces (e.g. a 3.1.1 header and a body).
    pub payload: &'a [&'a [u8]],
}

/// Appends one PUBLISH packet to `buf`. With `Protocol::V4` the properties are ignored.
pub fn encode_publish(buf: &mut BytesMut, proto: Protocol, p: &OutPublish<'_>) {
    let payload_len: usize = p.payload.iter().map(|s| s.len()).sum();
    let props_len = match proto {
        Protocol::V4 => 0,
        Protocol::V5 => {
            p.response_topic.map_or(0, |t| 3 + t.len()) + p.correlation.map_or(0, |c| 3 + c.len())
        }
    };
    let mut remaining = 2 + p.topic.len() + payload_len;
    if p.qos > 0 {
        remaining += 2;
    }
    if proto == Protocol::V5 {
        remaining += varint_len(props_len) + props_len;
    }
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(0x30 | ((p.qos & 0x03) << 1));
    put_varint(buf, remaining);
    buf.put_u16(p.topic.len() as u16);
    buf.put_slice(p.topic);
    if p.qos > 0 {
        buf.put_u16(p.pkid);
    }
    if proto == Protocol::V5 {
        put_varint(buf, props_len);
        if let Some(t) = p.response_topic {
            buf.put_u8(0x08);
            buf.put_u16(t.len() as u16);
            buf.put_slice(t);
        }
        if let Some(c) = p.correlation {
            buf.put_u8(0x09);
            buf.put_u16(c.len() as u16);
            buf.put_slice(c);
        }
    }
    for piece in p.payload {
        buf.put_slice(piece);
    }
}

/// A received PUBLISH, borrowed from the read buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct InPublish<'a> {
    pub topic: &'a [u8],
    pub qos: u8,
    pub pkid: u16,
    pub response_topic: Option<&'a [u8]>,
    pub correlation: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn bin(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn varint(&mut self) -> Result<usize, CodecError> {
        let mut v = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            v |= ((b & 0x7f) as usize) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::BadLength)
    }
}

/// Decodes the body of a PUBLISH frame (`frame` is the whole frame as found by [`next_frame`]).
pub fn decode_publish<'a>(
    frame_bytes: &'a [u8],
    frame: Frame,
    proto: Protocol,
) -> Result<InPublish<'a>, CodecError> {
    if frame.packet_type() != 3 {
        return Err(CodecError::UnexpectedPacket);
    }
    let qos = (frame.first_byte >> 1) & 0x03;
    if qos == 3 {
        return Err(CodecError::BadPublish);
    }
    let body = frame_bytes
        .get(frame.header_len..frame.total_len)
        .ok_or(CodecError::Truncated)?;
    let mut r = Reader { b: body, pos: 0 };
    let topic = r.bin()?;
    let pkid = if qos > 0 { r.u16()? } else { 0 };
    let mut response_topic = None;
    let mut correlation = None;
    if proto == Protocol::V5 {
        let plen = r.varint()?;
        let props = r.take(plen)?;
        let mut p = Reader { b: props, pos: 0 };
        while p.pos < props.len() {
            match p.u8()? {
                0x01 => {
                    p.u8()?;
                }
                0x02 => {
                    p.take(4)?;
                }
                0x23 => {
                    p.u16()?;
                }
                0x03 => {
                    p.bin()?;
                }
                0x08 => response_topic = Some(p.bin()?),
                0x09 => correlation = Some(p.bin()?),
                0x26 => {
                    p.bin()?;
                    p.bin()?;
                }
                0x0B => {
                    p.varint()?;
                }
                _ => return Err(CodecError::BadProperty),
            }
        }
    }
    let payload = &body[r.pos..];
    Ok(InPublish {
        topic,
        qos,
        pkid,
        response_topic,
        correlation,
        payload,
    })
}

/// Writes a 3.1.1 payload header (see module docs) into `buf`.
pub fn encode_header(buf: &mut BytesMut, reply_topic: &[u8], correlation: &[u8]) {
    buf.reserve(6 + reply_topic.len() + correlation.len());
    buf.put_slice(&HEADER_MAGIC);
    buf.put_u8(HEADER_VERSION);
    buf.put_u16(reply_topic.len() as u16);
    buf.put_slice(reply_topic);
    buf.put_u8(correlation.len() as u8);
    buf.put_slice(correlation);
}

/// A decoded 3.1.1 payload header and the body after it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub reply_topic: &'a [u8],
    pub correlation: &'a [u8],
    pub body: &'a [u8],
}

pub fn decode_header(payload: &[u8]) -> Result<Header<'_>, CodecError> {
    let mut r = Reader { b: payload, pos: 0 };
    let bad = |_| CodecError::BadHeader;
    if r.take(2).map_err(bad)? != HEADER_MAGIC || r.u8().map_err(bad)? != HEADER_VERSION {
        return Err(CodecError::BadHeader);
    }
    let reply_topic = r.bin().map_err(bad)?;
    let clen = r.u8().map_err(bad)? as usize;
    let correlation = r.take(clen).map_err(bad)?;
    Ok(Header {
        reply_topic,
        correlation,
        body: &payload[r.pos..],
    })
}

/// Where and how to answer a request, as found in the request itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo<'a> {
    pub topic: &'a [u8],
    pub correlation: &'a [u8],
    /// The request came with a 3.1.1 payload header, so the answer carries one too.
    pub header_style: bool,
    pub body: &'a [u8],
}

/// Finds the reply address of a request: MQTT 5 properties first, else the payload header.
pub fn reply_to<'a>(p: &InPublish<'a>) -> Result<ReplyTo<'a>, CodecError> {
    if let Some(topic) = p.response_topic {
        if topic.is_empty() {
            return Err(CodecError::NoReplyTopic);
        }
        return Ok(ReplyTo {
            topic,
            correlation: p.correlation.unwrap_or(&[]),
            header_style: false,
            body: p.payload,
        });
    }
    let h = decode_header(p.payload)?;
    if h.reply_topic.is_empty() {
        return Err(CodecError::NoReplyTopic);
    }
    Ok(ReplyTo {
        topic: h.reply_topic,
        correlation: h.correlation,
        header_style: true,
        body: h.body,
    })
}

/// Extracts the correlation of a response: the MQTT 5 property, else the payload header.
pub fn response_correlation(p: &InPublish<'_>) -> Result<Correlation, CodecError> {
    match p.correlation {
        Some(c) => Correlation::from_bytes(c),
        None => Correlation::from_bytes(decode_header(p.payload)?.correlation),
    }
}

/// Rewrites the packet identifier of one encoded QoS 1/2 PUBLISH (`packet` is exactly one
/// frame). Lets a packet encoded ahead of time get its identifier from the connection that
/// finally carries it.
pub fn set_publish_pkid(packet: &mut [u8], pkid: u16) -> Result<(), CodecError> {
    let f = next_frame(packet, usize::MAX)?.ok_or(CodecError::Truncated)?;
    if f.packet_type() != 3 || (f.first_byte >> 1) & 3 == 0 {
        return Err(CodecError::UnexpectedPacket);
    }
    let h = f.header_len;
    let topic_len = match packet.get(h..h + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
        None => return Err(CodecError::BadPublish),
    };
    let at = h + 2 + topic_len;
    match packet.get_mut(at..at + 2) {
        Some(slot) if at + 2 <= f.total_len => {
            slot.copy_from_slice(&pkid.to_be_bytes());
            Ok(())
        }
        _ => Err(CodecError::BadPublish),
    }
}

/// Encodes the answer to `req` (found with [`reply_to`]) with `body` as response body.
pub fn encode_response(
    buf: &mut BytesMut,
    proto: Protocol,
    req: &ReplyTo<'_>,
    qos: u8,
    pkid: u16,
    body: &[u8],
) {
    if req.header_style || proto == Protocol::V4 {
        let mut head = [0u8; 6 + 255];
        let clen = req.correlation.len().min(255);
        head[0..2].copy_from_slice(&HEADER_MAGIC);
        head[2] = HEADER_VERSION;
        head[5] = clen as u8;
        head[6..6 + clen].copy_from_slice(&req.correlation[..clen]);
        encode_publish(
            buf,
            proto,
            &OutPublish {
                topic: req.topic,
                qos,
                pkid,
                response_topic: None,
                correlation: if proto == Protocol::V5 {
                    Some(req.correlation)
                } else {
                    None
                },
                payload: &[&head[..6 + clen], body],
            },
        );
    } else {
        encode_publish(
            buf,
            proto,
            &OutPublish {
                topic: req.topic,
                qos,
                pkid,
                response_topic: None,
                correlation: Some(req.correlation),
                payload: &[body],
            },
        );
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
