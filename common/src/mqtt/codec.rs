//! Every MQTT byte, with no I/O: the packet limit, the fixed header and its remaining length,
//! the control packets we send (PINGREQ, DISCONNECT, PUBACK), the allocation-free PUBLISH
//! encoder/decoder of the hot path, the MQTT 3.1.1 payload header, what a received PUBLISH means
//! to an engine ([`to_message`]), and the packet identifiers of QoS 1 publishes.
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
//! its response body. With MQTT 5 the correlation travels in the standard Correlation Data
//! property and the reply topic in the Response Topic property, so any MQTT 5 requester
//! interoperates with the worker.

use crate::link::Message;
use bytes::{BufMut, BytesMut};
use thiserror::Error;

pub use crate::broker::Protocol;

/// Largest packet we accept from a broker (announced in CONNECT with MQTT 5; with 3.1.1 larger
/// packets are skipped and counted as they arrive).
pub const MAX_PACKET: usize = 4 << 20;
/// PINGREQ.
pub const PINGREQ: &[u8] = &[0xC0, 0x00];
/// DISCONNECT, normal disconnection (the same two bytes in 3.1.1 and 5).
pub const DISCONNECT: &[u8] = &[0xE0, 0x00];
/// Magic bytes that open a 3.1.1 payload header.
pub const HEADER_MAGIC: [u8; 2] = *b"RR";
/// Version byte of the 3.1.1 payload header.
pub const HEADER_VERSION: u8 = 1;

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
    #[error("unexpected packet type")]
    UnexpectedPacket,
}

/// Appends a PUBACK for `pkid` (same bytes in 3.1.1 and 5 for success).
pub fn encode_puback(buf: &mut BytesMut, pkid: u16) {
    buf.put_slice(&[0x40, 0x02]);
    buf.put_u16(pkid);
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

/// Reads a variable byte integer at the start of `b`: its value and the bytes it took,
/// `Ok(None)` when `b` ends inside it. The one parser of MQTT's varints (remaining length and
/// property lengths).
fn read_varint(b: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut v = 0usize;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    Err(CodecError::BadLength)
}

/// The fixed header at the start of `buf`, once its remaining length is complete, whatever the
/// frame's size and whether the rest of it has arrived (`total_len` may exceed `buf.len()`).
pub fn fixed_header(buf: &[u8]) -> Result<Option<Frame>, CodecError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    Ok(read_varint(&buf[1..])?.map(|(len, n)| Frame {
        first_byte,
        header_len: 1 + n,
        total_len: 1 + n + len,
    }))
}

/// Looks for one complete MQTT frame at the start of `buf`.
/// `Ok(None)` means more bytes are needed; a frame announcing more than `max_len` bytes after
/// its fixed header is [`CodecError::TooLarge`] (see [`fixed_header`] for its length).
pub fn next_frame(buf: &[u8], max_len: usize) -> Result<Option<Frame>, CodecError> {
    let Some(f) = fixed_header(buf)? else {
        return Ok(None);
    };
    if f.total_len - f.header_len > max_len {
        return Err(CodecError::TooLarge);
    }
    Ok((buf.len() >= f.total_len).then_some(f))
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
        let rest = self.b.get(self.pos..).unwrap_or_default();
        let (v, n) = read_varint(rest)?.ok_or(CodecError::Truncated)?;
        self.pos += n;
        Ok(v)
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

/// The fixed bytes of a 3.1.1 payload header around its reply topic and correlation: a header
/// is written as payload pieces `[lead, reply topic, clen, correlation]`, straight into the
/// packet. The one place that lays the header out.
pub struct HeaderParts {
    pub lead: [u8; 5],
    pub clen: [u8; 1],
}

/// The header parts for `reply_topic` and `correlation`, and the correlation as it fits the
/// header (at most 255 bytes).
pub fn header_parts<'a>(reply_topic: &[u8], correlation: &'a [u8]) -> (HeaderParts, &'a [u8]) {
    let corr = &correlation[..correlation.len().min(255)];
    let tl = (reply_topic.len() as u16).to_be_bytes();
    let lead = [
        HEADER_MAGIC[0],
        HEADER_MAGIC[1],
        HEADER_VERSION,
        tl[0],
        tl[1],
    ];
    let parts = HeaderParts {
        lead,
        clen: [corr.len() as u8],
    };
    (parts, corr)
}

/// Writes a 3.1.1 payload header (see module docs) into `buf`.
pub fn encode_header(buf: &mut BytesMut, reply_topic: &[u8], correlation: &[u8]) {
    let (h, corr) = header_parts(reply_topic, correlation);
    buf.reserve(6 + reply_topic.len() + corr.len());
    buf.put_slice(&h.lead);
    buf.put_slice(reply_topic);
    buf.put_slice(&h.clen);
    buf.put_slice(corr);
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

/// What a received PUBLISH (`wire_len` bytes on the wire) says to an engine. MQTT 5 properties
/// come first; a message without a Response Topic whose payload opens with the 3.1.1 header
/// magic carries its reply topic and correlation in that header, which must then be well
/// formed, and its body after it. An empty reply topic is none.
pub fn to_message<'a>(p: &InPublish<'a>, wire_len: usize) -> Result<Message<'a>, CodecError> {
    let magic = [HEADER_MAGIC[0], HEADER_MAGIC[1], HEADER_VERSION];
    if p.response_topic.is_none() && p.payload.starts_with(&magic) {
        let h = decode_header(p.payload)?;
        return Ok(Message {
            topic: p.topic,
            payload: h.body,
            reply_to: (!h.reply_topic.is_empty()).then_some(h.reply_topic),
            correlation: Some(p.correlation.unwrap_or(h.correlation)),
            in_header: true,
            wire_len,
        });
    }
    Ok(Message {
        topic: p.topic,
        payload: p.payload,
        reply_to: p.response_topic.filter(|t| !t.is_empty()),
        correlation: p.correlation,
        in_header: false,
        wire_len,
    })
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

/// A QoS 1/2 PUBLISH: counted against the broker's receive maximum until acknowledged.
fn acknowledged(f: &Frame) -> bool {
    f.packet_type() == 3 && f.first_byte & 0b0110 != 0
}

/// QoS 1/2 PUBLISH packets among the whole packets in `b`.
pub fn flow_publishes(mut b: &[u8]) -> u32 {
    let mut n = 0;
    while let Ok(Some(f)) = next_frame(b, usize::MAX) {
        n += u32::from(acknowledged(&f));
        b = &b[f.total_len..];
    }
    n
}

/// The `k`-th packet identifier from `first` on: 1..=65535, never 0.
fn packet_id(first: u32, k: u32) -> u16 {
    (first.wrapping_add(k) % 65_535) as u16 + 1
}

/// Gives the QoS 1/2 PUBLISH packets among the whole packets in `b` consecutive packet
/// identifiers, `first` on (see [`packet_id`]).
pub fn stamp_publishes(mut b: &mut [u8], first: u32) {
    let mut k = 0;
    while let Ok(Some(f)) = next_frame(b, usize::MAX) {
        let (packet, rest) = b.split_at_mut(f.total_len);
        if acknowledged(&f) {
            // our own encoding: a QoS 1 PUBLISH, always rewritable
            let _ = set_publish_pkid(packet, packet_id(first, k));
            k += 1;
        }
        b = rest;
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
