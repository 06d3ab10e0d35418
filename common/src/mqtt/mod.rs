//! MQTT (3.1.1 and 5) behind the transport seam: [`codec`] owns every MQTT byte, [`session`]
//! sets a session up (CONNECT, SUBSCRIBE), [`link`] reads (dispatch, acknowledgements, flow
//! control), and [`Encoder`] writes what engines send: requests, answers and plain publishes,
//! with MQTT 5 properties or the 3.1.1 payload header.

pub mod codec;
pub mod link;
mod session;

use crate::link::{Framing, Message, Session, SessionError, SessionSpec, Transport};
use bytes::BytesMut;
use codec::{encode_publish, header_parts, OutPublish, Protocol};

/// The MQTT transport.
pub struct Mqtt;

static FRAMING: Framing = Framing {
    count_flow: codec::flow_publishes,
    stamp: codec::stamp_publishes,
};

impl Transport for Mqtt {
    type Decoder = link::Decoder;
    const PING: &'static [u8] = codec::PINGREQ;
    const GOODBYE: &'static [u8] = codec::DISCONNECT;
    const FRAMING: &'static Framing = &FRAMING;

    async fn connect(spec: &SessionSpec) -> Result<Session<link::Decoder>, SessionError> {
        session::connect(spec).await
    }
}

/// Encodes what engines send over MQTT. QoS 1 messages leave their packet identifier to the
/// link that carries them (`Link::send_flow`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Encoder {
    pub proto: Protocol,
}

impl Encoder {
    /// Whether messages sent with `qos` count against the broker's receive maximum.
    pub fn flow_controlled(&self, qos: u8) -> bool {
        qos > 0
    }

    /// A request to `topic` asking for an answer on `reply_to` that echoes `correlation`.
    pub fn request(
        &self,
        buf: &mut BytesMut,
        topic: &[u8],
        reply_to: &[u8],
        correlation: &[u8],
        body: &[u8],
        qos: u8,
    ) {
        match self.proto {
            Protocol::V5 => encode_publish(
                buf,
                Protocol::V5,
                &OutPublish {
                    topic,
                    qos,
                    pkid: 0,
                    response_topic: Some(reply_to),
                    correlation: Some(correlation),
                    payload: &[body],
                },
            ),
            Protocol::V4 => {
                let (h, corr) = header_parts(reply_to, correlation);
                encode_publish(
                    buf,
                    Protocol::V4,
                    &OutPublish {
                        topic,
                        qos,
                        pkid: 0,
                        response_topic: None,
                        correlation: None,
                        payload: &[&h.lead, reply_to, &h.clen, corr, body],
                    },
                )
            }
        }
    }

    /// The answer to `req` (its `reply_to` must be set; nothing is encoded otherwise), framed
    /// the way the request was: with the 3.1.1 header when it came with one or the connection
    /// speaks 3.1.1 (plus the Correlation Data property with MQTT 5), else with properties.
    pub fn answer(&self, buf: &mut BytesMut, req: &Message<'_>, body: &[u8], qos: u8) {
        let Some(topic) = req.reply_to else {
            return;
        };
        let corr = req.correlation.unwrap_or_default();
        let v5 = self.proto == Protocol::V5;
        let in_header = req.in_header || !v5;
        let (h, short) = header_parts(b"", corr);
        let pieces: [&[u8]; 4] = [&h.lead, &h.clen, short, body];
        encode_publish(
            buf,
            self.proto,
            &OutPublish {
                topic,
                qos,
                pkid: 0,
                response_topic: None,
                correlation: v5.then_some(if in_header { short } else { corr }),
                payload: if in_header { &pieces } else { &pieces[3..] },
            },
        );
    }

    /// A message to `topic` that asks for no answer, its payload given in pieces.
    pub fn publish(&self, buf: &mut BytesMut, topic: &[u8], payload: &[&[u8]], qos: u8) {
        encode_publish(
            buf,
            self.proto,
            &OutPublish {
                topic,
                qos,
                pkid: 0,
                response_topic: None,
                correlation: None,
                payload,
            },
        );
    }
}
