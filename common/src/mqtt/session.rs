//! An MQTT session's set-up (3.1.1 and 5): CONNECT with `rumqttc`'s mqttbytes, CONNACK (refusals
//! mapped to errors that say what to check), SUBSCRIBE and SUBACK. Keep-alive and reconnects are
//! the driver's (`link::driver`), with this transport's PINGREQ.

use super::codec::{self, Frame, Protocol, MAX_PACKET};
use super::link::Decoder;
use crate::broker::BrokerUrl;
use crate::link::{self, Session, SessionError, SessionSpec};
use crate::net::{self, WireReader, WireWriter};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4 as mb4;
use rumqttc::v5::mqttbytes::v5 as mb5;
use rumqttc::v5::mqttbytes::QoS;

async fn read_packet(
    reader: &mut WireReader,
    writer: &mut WireWriter,
    buf: &mut BytesMut,
    url: &BrokerUrl,
) -> Result<(Frame, Bytes), SessionError> {
    loop {
        match codec::next_frame(buf, MAX_PACKET) {
            Ok(Some(f)) => {
                let bytes = buf.split_to(f.total_len).freeze();
                return Ok((f, bytes));
            }
            Ok(None) => {}
            Err(e) => return Err(SessionError::Protocol(e.to_string())),
        }
        let n = match reader.read_into(buf).await {
            Ok(n) => n,
            Err(e) => return Err(link::handshake_error(url, e)),
        };
        if let Some(reply) = reader.take_reply() {
            // a WebSocket pong (or our answer to its close)
            writer
                .write_frame(reply)
                .await
                .map_err(|e| link::handshake_error(url, e))?;
            if n == 0 {
                continue;
            }
        }
        if n == 0 {
            return Err(SessionError::Closed);
        }
    }
}

fn refused_v5(code: mb5::ConnectReturnCode) -> SessionError {
    use mb5::ConnectReturnCode as C;
    match code {
        C::BadUserNamePassword | C::NotAuthorized | C::BadAuthenticationMethod | C::Banned => {
            SessionError::Auth(format!("{code:?}"))
        }
        other => SessionError::Refused(format!("{other:?}")),
    }
}

fn refused_v4(code: mb4::ConnectReturnCode) -> SessionError {
    use mb4::ConnectReturnCode as C;
    match code {
        C::BadUserNamePassword | C::NotAuthorized => SessionError::Auth(format!("{code:?}")),
        other => SessionError::Refused(format!("{other:?}")),
    }
}

/// Opens the transport, sends CONNECT (clean start), waits for CONNACK, subscribes and waits
/// for SUBACK. No time limit of its own (see `link::establish`).
pub(super) async fn connect(spec: &SessionSpec) -> Result<Session<Decoder>, SessionError> {
    let opts = &spec.opts;
    let proto = opts.protocol();
    let (mut reader, mut writer) = net::open(&spec.url, opts, spec.tls.as_ref(), spec.bind).await?;
    let mut out = BytesMut::with_capacity(256);
    let username = opts.username().map(str::to_string);
    let password = opts.password().unwrap_or_default().to_string();
    let werr = |e: std::io::Error| link::handshake_error(&spec.url, e);
    match proto {
        Protocol::V5 => {
            let props = mb5::ConnectProperties {
                receive_maximum: Some(u16::MAX),
                max_packet_size: Some(MAX_PACKET as u32),
                ..mb5::ConnectProperties::new()
            };
            let connect = mb5::Connect {
                keep_alive: opts.keep_alive_sec,
                client_id: spec.client_id.clone(),
                clean_start: true,
                properties: Some(props),
            };
            let login = username.map(|u| mb5::Login::new(u, password));
            mb5::Packet::Connect(connect, None, login)
                .write(&mut out, None)
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
        }
        Protocol::V4 => {
            let mut connect = mb4::Connect::new(spec.client_id.clone());
            connect.keep_alive = opts.keep_alive_sec;
            connect.clean_session = true;
            connect.login = username.map(|u| mb4::Login::new(u, password));
            connect
                .write(&mut out)
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
        }
    }
    writer.write_all(out.split().freeze()).await.map_err(werr)?;
    // empty: a WebSocket read appends exactly what arrived (an idle subscriber keeps nothing)
    let mut buf = BytesMut::new();
    let (f, bytes) = read_packet(&mut reader, &mut writer, &mut buf, &spec.url).await?;
    if f.packet_type() != 2 {
        return Err(SessionError::Protocol(format!(
            "expected CONNACK, got packet type {}",
            f.packet_type()
        )));
    }
    let mut receive_max = u16::MAX;
    match proto {
        Protocol::V5 => match mb5::Packet::read(&mut BytesMut::from(&bytes[..]), None) {
            Ok(mb5::Packet::ConnAck(ack)) => {
                if ack.code != mb5::ConnectReturnCode::Success {
                    return Err(refused_v5(ack.code));
                }
                if let Some(rm) = ack.properties.and_then(|p| p.receive_max) {
                    receive_max = rm;
                }
            }
            other => return Err(SessionError::Protocol(format!("bad CONNACK: {other:?}"))),
        },
        Protocol::V4 => match mb4::Packet::read(&mut BytesMut::from(&bytes[..]), MAX_PACKET) {
            Ok(mb4::Packet::ConnAck(ack)) => {
                if ack.code != mb4::ConnectReturnCode::Success {
                    return Err(refused_v4(ack.code));
                }
            }
            other => return Err(SessionError::Protocol(format!("bad CONNACK: {other:?}"))),
        },
    }
    if !spec.subscriptions.is_empty() {
        let qos = |q: u8| {
            if q == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            }
        };
        match proto {
            Protocol::V5 => {
                let filters = spec
                    .subscriptions
                    .iter()
                    .map(|(t, q)| mb5::Filter::new(t.clone(), qos(*q)));
                let mut sub = mb5::Subscribe::new_many(filters, None);
                sub.pkid = 1;
                mb5::Packet::Subscribe(sub)
                    .write(&mut out, None)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
            }
            Protocol::V4 => {
                let filters = spec.subscriptions.iter().map(|(t, q)| {
                    let q = if *q == 0 {
                        rumqttc::QoS::AtMostOnce
                    } else {
                        rumqttc::QoS::AtLeastOnce
                    };
                    mb4::SubscribeFilter::new(t.clone(), q)
                });
                let mut sub = mb4::Subscribe::new_many(filters);
                sub.pkid = 1;
                sub.write(&mut out)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
            }
        }
        writer.write_all(out.split().freeze()).await.map_err(werr)?;
        // Wait for SUBACK; PUBLISHes may not arrive before it for a fresh clean session.
        loop {
            let (f, bytes) = read_packet(&mut reader, &mut writer, &mut buf, &spec.url).await?;
            if f.packet_type() != 9 {
                continue;
            }
            let failed = match proto {
                Protocol::V5 => match mb5::Packet::read(&mut BytesMut::from(&bytes[..]), None) {
                    Ok(mb5::Packet::SubAck(ack)) => ack
                        .return_codes
                        .iter()
                        .position(|c| !matches!(c, mb5::SubscribeReasonCode::Success(_))),
                    other => return Err(SessionError::Protocol(format!("bad SUBACK: {other:?}"))),
                },
                Protocol::V4 => {
                    match mb4::Packet::read(&mut BytesMut::from(&bytes[..]), MAX_PACKET) {
                        Ok(mb4::Packet::SubAck(ack)) => ack
                            .return_codes
                            .iter()
                            .position(|c| !matches!(c, mb4::SubscribeReasonCode::Success(_))),
                        other => {
                            return Err(SessionError::Protocol(format!("bad SUBACK: {other:?}")))
                        }
                    }
                }
            };
            if let Some(i) = failed {
                return Err(SessionError::SubscribeRejected(
                    spec.subscriptions[i].0.clone(),
                ));
            }
            break;
        }
    }
    Ok(Session {
        reader,
        writer,
        pending: buf,
        decoder: Decoder::new(proto),
        flow_limit: u32::from(receive_max),
    })
}
