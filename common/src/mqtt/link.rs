//! The read side of an MQTT link: frames parsed from the read buffer, PUBLISHes handed to the
//! engine's handler as messages (QoS 1 acknowledged), PUBACKs returned to the link's flow
//! control, oversized packets skipped and counted without losing the connection.

use super::codec::{self, CodecError, Protocol, MAX_PACKET};
use crate::link::{Decode, Flow, Handler, Invalid};
use bytes::BytesMut;
use std::time::Instant;

/// Reader state of one MQTT session.
pub struct Decoder {
    proto: Protocol,
    /// Bytes of an oversized packet still to drop as they arrive.
    skip: usize,
}

impl Decoder {
    pub fn new(proto: Protocol) -> Decoder {
        Decoder { proto, skip: 0 }
    }
}

fn invalid(e: CodecError) -> Invalid {
    match e {
        CodecError::TooLarge => Invalid::TooLarge,
        CodecError::UnexpectedPacket => Invalid::Unexpected,
        _ => Invalid::Malformed,
    }
}

impl Decode for Decoder {
    /// A frame larger than [`MAX_PACKET`] (MQTT 3.1.1 cannot tell the broker our limit) is
    /// counted as invalid and its bytes are dropped as they arrive (`skip` carries the rest
    /// across reads), so one oversized message costs neither memory nor the connection. An
    /// error means a broken stream (framing lost, or the broker said DISCONNECT).
    fn dispatch<H: Handler>(
        &mut self,
        buf: &mut BytesMut,
        handler: &mut H,
        replies: &mut BytesMut,
        flow: Option<&Flow>,
        now: Instant,
    ) -> Result<(), String> {
        let mut consumed = self.skip.min(buf.len());
        self.skip -= consumed;
        let result = loop {
            if self.skip > 0 {
                break Ok(());
            }
            let rest = &buf[consumed..];
            let f = match codec::next_frame(rest, MAX_PACKET) {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(CodecError::TooLarge) => {
                    let Ok(Some(f)) = codec::fixed_header(rest) else {
                        break Err("unreadable frame length".into());
                    };
                    handler.on_invalid(Invalid::TooLarge);
                    let now_dropped = f.total_len.min(rest.len());
                    consumed += now_dropped;
                    self.skip = f.total_len - now_dropped;
                    continue;
                }
                Err(e) => break Err(format!("unreadable frame: {e}")),
            };
            let frame = &rest[..f.total_len];
            match f.packet_type() {
                3 => match codec::decode_publish(frame, f, self.proto) {
                    Ok(p) => {
                        if p.qos == 1 {
                            codec::encode_puback(replies, p.pkid);
                        }
                        match codec::to_message(&p, frame.len()) {
                            Ok(m) => handler.on_message(&m, now),
                            Err(e) => handler.on_invalid(invalid(e)),
                        }
                    }
                    Err(e) => handler.on_invalid(invalid(e)),
                },
                4 if frame.len() >= 4 => {
                    if let Some(flow) = flow {
                        flow.acked(1);
                    }
                    handler.on_room();
                }
                4 => handler.on_invalid(Invalid::Malformed),
                13 | 9 | 11 => {} // PINGRESP, SUBACK, UNSUBACK
                14 => break Err("broker sent DISCONNECT".into()),
                _ => handler.on_invalid(Invalid::Unexpected),
            }
            consumed += f.total_len;
        };
        let _ = buf.split_to(consumed);
        result
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
