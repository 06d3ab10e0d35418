//! Kafka as a transport, through librdkafka (the `rdkafka` crate, linked to the system's
//! librdkafka): broker URLs (`kafka://`, `kafka+ssl://`), client configuration and start-up
//! checks, the topic layout, and the request/reply header convention. See docs/kafka.md.

pub mod client;
pub mod encoder;
pub mod headers;
pub mod records;
pub mod topics;
pub mod url;

pub use client::{KafkaContext, KafkaSetupError, SaslMechanism, Security};
pub use url::KafkaUrl;
