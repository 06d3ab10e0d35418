//! Kafka as a transport, through librdkafka (the `rdkafka` crate, its bundled librdkafka
//! linked statically): broker URLs (`kafka://`, `kafka+ssl://`), client configuration and start-up
//! checks, the topic layout, the request/reply header convention, and the transport behind the link
//! seam (encoder, record batches, sessions, driver). See docs/kafka.md.

pub mod client;
pub mod driver;
pub mod encoder;
pub mod headers;
pub mod link;
mod offsets;
pub mod records;
pub mod topics;
pub mod url;

pub use client::{KafkaContext, KafkaSetupError, SaslMechanism, Security};
pub use url::KafkaUrl;
