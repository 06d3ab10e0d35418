//! [`Embedded`]: the in-process `rr-broker` on free loopback ports, for tests.

use std::net::SocketAddr;

use rr_broker::{EmbeddedBroker, EmbeddedBrokerConfig, WS_PATH};

/// The embedded broker (mqtt5 crate) on a free 127.0.0.1 port. Runs on the tokio runtime
/// that started it; dropping it signals shutdown, [`Embedded::stop`] also waits for it.
#[derive(Debug)]
pub struct Embedded {
    broker: EmbeddedBroker,
}

impl Embedded {
    /// Starts a broker with an MQTT/TCP listener only.
    ///
    /// # Errors
    /// The broker could not bind or start.
    pub async fn start() -> anyhow::Result<Embedded> {
        Self::start_with(EmbeddedBrokerConfig::loopback()).await
    }

    /// Starts a broker with MQTT/TCP and MQTT/WebSocket (path `/mqtt`) listeners.
    ///
    /// # Errors
    /// The broker could not bind or start.
    pub async fn start_with_ws() -> anyhow::Result<Embedded> {
        Self::start_with(EmbeddedBrokerConfig::loopback().with_loopback_ws()).await
    }

    /// Starts a broker on the given addresses.
    ///
    /// # Errors
    /// The broker could not bind or start.
    pub async fn start_with(cfg: EmbeddedBrokerConfig) -> anyhow::Result<Embedded> {
        let broker = EmbeddedBroker::start(cfg).await?;
        Ok(Embedded { broker })
    }

    /// `mqtt://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.broker.tcp_addr())
    }

    /// `ws://127.0.0.1:PORT/mqtt` when started with a WebSocket listener.
    #[must_use]
    pub fn ws_url(&self) -> Option<String> {
        self.broker.ws_addr().map(|a| format!("ws://{a}{WS_PATH}"))
    }

    /// The bound MQTT/TCP address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.broker.tcp_addr()
    }

    /// The underlying broker.
    #[must_use]
    pub fn broker(&self) -> &EmbeddedBroker {
        &self.broker
    }

    /// Shuts the broker down and waits until it has.
    pub async fn stop(self) {
        self.broker.stop().await;
    }
}
