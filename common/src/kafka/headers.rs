//! The request/reply convention over Kafka, in record headers, as Spring's
//! `ReplyingKafkaTemplate` and `@SendTo` listeners use it, so either side interoperates with
//! Spring services:
//!
//! | header | value | set by |
//! |---|---|---|
//! | `kafka_correlationId` | opaque bytes (ours: the 12-byte [`Correlation`](crate::codec::Correlation)) | requester; echoed by the replier |
//! | `kafka_replyTopic` | UTF-8 topic name | requester |
//! | `kafka_replyPartition` | 4-byte big-endian partition number (optional) | requester |
//!
//! The record value is the body, untouched: no header is ever put into the payload.
//! The replier produces its answer to `kafka_replyTopic` (to `kafka_replyPartition` when the
//! request names one) with the request's `kafka_correlationId`.

/// Why a record's headers do not make a usable request or reply. `Copy`, to index counters.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing or unusable kafka_replyTopic")]
    NoReplyTopic,
    #[error("missing kafka_correlationId, or longer than 255 bytes")]
    BadCorrelation,
    #[error("kafka_replyPartition is not a 4-byte non-negative number")]
    BadPartition,
}

/// Header carrying the correlation (Spring's `KafkaHeaders.CORRELATION_ID`).
pub const CORRELATION_ID: &str = "kafka_correlationId";
/// Header carrying the topic the reply goes to (Spring's `KafkaHeaders.REPLY_TOPIC`).
pub const REPLY_TOPIC: &str = "kafka_replyTopic";
/// Header carrying the partition the reply goes to (Spring's `KafkaHeaders.REPLY_PARTITION`).
pub const REPLY_PARTITION: &str = "kafka_replyPartition";
/// Longest correlation a replier echoes (the MQTT 3.1.1 header's limit, for the same books).
pub const MAX_CORRELATION: usize = 255;

/// Where and how to answer one request, borrowed from its headers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KafkaReplyTo<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub correlation: &'a [u8],
}

/// Reads the reply address of a request from its headers (`(name, value)` in record order;
/// a later duplicate header wins, as Spring's header mapper does).
///
/// # Errors
/// [`HeaderError::NoReplyTopic`] without a usable `kafka_replyTopic` (missing, empty, not UTF-8,
/// not a legal topic name); [`HeaderError::BadCorrelation`] without a correlation or with one
/// longer than [`MAX_CORRELATION`]; [`HeaderError::BadPartition`] for a reply partition that is
/// not 4 bytes or is negative.
pub fn reply_to<'a, I>(headers: I) -> Result<KafkaReplyTo<'a>, HeaderError>
where
    I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
{
    let mut topic = None;
    let mut partition = None;
    let mut correlation = None;
    for (name, value) in headers {
        match name {
            REPLY_TOPIC => topic = value,
            REPLY_PARTITION => partition = Some(value),
            CORRELATION_ID => correlation = value,
            _ => {}
        }
    }
    let topic = topic
        .and_then(|t| std::str::from_utf8(t).ok())
        .filter(|t| super::topics::is_legal_topic(t))
        .ok_or(HeaderError::NoReplyTopic)?;
    let correlation = correlation
        .filter(|c| c.len() <= MAX_CORRELATION)
        .ok_or(HeaderError::BadCorrelation)?;
    let partition = match partition {
        None => None,
        Some(v) => {
            let b: [u8; 4] = v
                .and_then(|v| v.try_into().ok())
                .ok_or(HeaderError::BadPartition)?;
            let p = i32::from_be_bytes(b);
            if p < 0 {
                return Err(HeaderError::BadPartition);
            }
            Some(p)
        }
    };
    Ok(KafkaReplyTo {
        topic,
        partition,
        correlation,
    })
}

/// The correlation of a reply (the last `kafka_correlationId` header).
///
/// # Errors
/// [`HeaderError::BadCorrelation`] when the reply carries none.
pub fn correlation_of<'a, I>(headers: I) -> Result<&'a [u8], HeaderError>
where
    I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
{
    headers
        .into_iter()
        .filter(|(n, _)| *n == CORRELATION_ID)
        .filter_map(|(_, v)| v)
        .last()
        .ok_or(HeaderError::BadCorrelation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spring_headers() {
        let p = 3i32.to_be_bytes();
        let h = [
            ("traceparent", Some(&b"00-x"[..])),
            (REPLY_TOPIC, Some(&b"resp.lg-1"[..])),
            (REPLY_PARTITION, Some(&p[..])),
            (CORRELATION_ID, Some(&b"0123456789ab"[..])),
        ];
        assert_eq!(
            reply_to(h),
            Ok(KafkaReplyTo {
                topic: "resp.lg-1",
                partition: Some(3),
                correlation: b"0123456789ab",
            })
        );
        assert_eq!(correlation_of(h), Ok(&b"0123456789ab"[..]));
        // Without a partition the replier lets the producer pick.
        let h = [
            (REPLY_TOPIC, Some(&b"r"[..])),
            (CORRELATION_ID, Some(&b"c"[..])),
        ];
        assert_eq!(reply_to(h).map(|r| r.partition), Ok(None));
    }

    #[test]
    fn rejects_requests_it_cannot_answer() {
        let c = Some(&b"c"[..]);
        type Case<'a> = (&'a [(&'a str, Option<&'a [u8]>)], HeaderError);
        let cases: [Case<'_>; 7] = [
            (&[(CORRELATION_ID, c)], HeaderError::NoReplyTopic),
            (
                &[(REPLY_TOPIC, Some(&b""[..])), (CORRELATION_ID, c)],
                HeaderError::NoReplyTopic,
            ),
            (
                &[(REPLY_TOPIC, Some(&b"a/b"[..])), (CORRELATION_ID, c)],
                HeaderError::NoReplyTopic,
            ),
            (
                &[(REPLY_TOPIC, Some(&[0xff][..])), (CORRELATION_ID, c)],
                HeaderError::NoReplyTopic,
            ),
            (
                &[(REPLY_TOPIC, Some(&b"r"[..]))],
                HeaderError::BadCorrelation,
            ),
            (
                &[
                    (REPLY_TOPIC, Some(&b"r"[..])),
                    (CORRELATION_ID, c),
                    (REPLY_PARTITION, Some(&[0, 1][..])),
                ],
                HeaderError::BadPartition,
            ),
            (
                &[
                    (REPLY_TOPIC, Some(&b"r"[..])),
                    (CORRELATION_ID, c),
                    (REPLY_PARTITION, Some(&(-1i32).to_be_bytes()[..])),
                ],
                HeaderError::BadPartition,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(reply_to(h.iter().copied()), Err(want), "{h:?}");
        }
        let long = vec![0u8; MAX_CORRELATION + 1];
        assert_eq!(
            reply_to([
                (REPLY_TOPIC, Some(&b"r"[..])),
                (CORRELATION_ID, Some(&long[..]))
            ]),
            Err(HeaderError::BadCorrelation)
        );
        assert_eq!(correlation_of([]), Err(HeaderError::BadCorrelation));
    }
}
