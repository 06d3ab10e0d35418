//! Shared library of mqtt-rr-bench: the wire codec, broker URLs and connection options, lean
//! MQTT connections over TCP/TLS/WebSocket, HTTP endpoints, latency statistics and CLI helpers.

pub mod broker;
pub mod cli;
pub mod codec;
pub mod http;
pub mod mqtt;
pub mod nats;
pub mod net;
pub mod outlet;
pub mod stats;

pub use tokio_util::sync::CancellationToken;
