//! Shared library of mqtt-rr-bench: broker URLs and connection options, byte transports
//! (TCP/TLS/WebSocket), the transport seam (`link`: handler, link, driver) with MQTT behind it
//! (`mqtt`) and the engines' entry to it (`transport`), the correlation codec, HTTP endpoints,
//! latency statistics and CLI helpers.

pub mod broker;
pub mod cli;
pub mod codec;
pub mod http;
pub mod kafka;
pub mod link;
pub mod mqtt;
pub mod nats;
pub mod net;
pub mod prom;
pub mod stats;
pub mod transport;
pub mod ws;

pub use tokio_util::sync::CancellationToken;
