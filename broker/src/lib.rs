//! Embedded MQTT 5 / 3.1.1 broker (the `mqtt5` crate) configured for load tests.
//!
//! Persistence and `$SYS` topics are off, anonymous clients are allowed, shared subscriptions
//! (`$share/{group}/{filter}`) are on, and every per-client limit that would throttle or drop
//! load-test traffic is raised or disabled. Listeners may use port 0; the bound addresses are
//! read back from the sockets, so [`EmbeddedBroker::tcp_addr`] always holds the real port.

use std::net::SocketAddr;

use anyhow::{anyhow, Context};
use mqtt5::broker::config::{StorageBackend, StorageConfig, WebSocketConfig};
use mqtt5::broker::{BrokerConfig, BrokerShutdownHandle, MqttBroker, ResourceLimits};
use tokio::task::JoinHandle;

/// Largest MQTT packet the broker accepts (and advertises in CONNACK).
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;
/// Upper bound on concurrent connections, in total and per client IP.
pub const MAX_CLIENTS: usize = 1_000_000;
/// Messages buffered per connection (per QoS lane) before the broker drops QoS 0 deliveries.
pub const CLIENT_CHANNEL_CAPACITY: usize = 100_000;
/// Messages queued per client for QoS 1/2 while its in-flight window is full or it is offline.
pub const MAX_QUEUED_MESSAGES: usize = 100_000;
/// WebSocket path served by the WebSocket listener.
pub const WS_PATH: &str = "/mqtt";

/// Where the embedded broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedBrokerConfig {
    /// MQTT over TCP. Port 0 picks a free port.
    pub tcp_addr: SocketAddr,
    /// MQTT over WebSocket (path [`WS_PATH`], subprotocol `mqtt`); `None` = no WebSocket listener.
    pub ws_addr: Option<SocketAddr>,
    /// Further WebSocket listeners (same path), each with an explicit port: more listeners
    /// give clients more ephemeral-port ranges (one per destination address and port).
    pub ws_extra: Vec<SocketAddr>,
}

impl EmbeddedBrokerConfig {
    /// TCP on a free loopback port, no WebSocket: what tests want.
    #[must_use]
    pub fn loopback() -> Self {
        Self {
            tcp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ws_addr: None,
            ws_extra: Vec::new(),
        }
    }

    /// Adds a WebSocket listener on a free loopback port.
    #[must_use]
    pub fn with_loopback_ws(mut self) -> Self {
        self.ws_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }
}

/// A running broker. Stop it with [`EmbeddedBroker::stop`]; dropping it signals shutdown
/// without waiting for the connections to close.
pub struct EmbeddedBroker {
    tcp_addr: SocketAddr,
    ws_addrs: Vec<SocketAddr>,
    shutdown: BrokerShutdownHandle,
    task: Option<JoinHandle<mqtt5::Result<()>>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("tcp_addr", &self.tcp_addr)
            .field("ws_addrs", &self.ws_addrs)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Binds the listeners, starts the broker on the current tokio runtime and returns once it
    /// accepts connections.
    ///
    /// # Errors
    /// A listener cannot be bound (the WebSocket one included: mqtt5 only warns about that, this
    /// turns it into an error), or the broker fails while starting.
    pub async fn start(cfg: EmbeddedBrokerConfig) -> anyhow::Result<EmbeddedBroker> {
        if cfg.ws_addr.is_none() && !cfg.ws_extra.is_empty() {
            return Err(anyhow!(
                "further WebSocket listeners need a first one (ws_addr)"
            ));
        }
        if let Some(a) = cfg.ws_extra.iter().find(|a| a.port() == 0) {
            return Err(anyhow!(
                "WebSocket listener {a}: every listener after the first needs an explicit port"
            ));
        }
        // mqtt5 only warns when some of several listeners fail to bind: find a taken port
        // first (binding as its listener will, with SO_REUSEADDR, fails only on a listener).
        for &extra in &cfg.ws_extra {
            let sock = if extra.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            };
            sock.and_then(|s| {
                s.set_reuseaddr(true)?;
                s.bind(extra)
            })
            .with_context(|| {
                format!("MQTT broker could not bind its WebSocket listener on {extra}")
            })?;
        }
        let broker_config = broker_config(&cfg);
        let mut broker = MqttBroker::with_config(broker_config)
            .await
            .map_err(|e| anyhow!("starting the MQTT broker on {}: {e}", cfg.tcp_addr))?;
        let tcp_addr = broker
            .local_addr()
            .with_context(|| format!("MQTT broker has no TCP listener on {}", cfg.tcp_addr))?;
        let mut ws_addrs = Vec::new();
        if let Some(requested) = cfg.ws_addr {
            ws_addrs.push(broker.ws_local_addr().with_context(|| {
                format!("MQTT broker could not bind its WebSocket listener on {requested}")
            })?);
        }
        ws_addrs.extend(&cfg.ws_extra);
        // mqtt5 derives these from BrokerConfig with fixed per-IP (10k) and connection-rate
        // (10k/s, tracked in a Vec scanned on every accept) caps; lift them.
        broker.resource_monitor().update_limits(resource_limits());

        let shutdown = broker.shutdown_handle();
        let mut ready = broker.ready_receiver();
        let task = tokio::spawn(async move { broker.run().await });
        if ready.wait_for(|ready| *ready).await.is_err() {
            // The broker (and its ready sender) is gone: `run` returned before getting ready.
            let outcome = task.await;
            return Err(match outcome {
                Ok(Err(e)) => anyhow!("MQTT broker failed while starting: {e}"),
                Ok(Ok(())) => anyhow!("MQTT broker stopped while starting"),
                Err(e) => anyhow!("MQTT broker task failed while starting: {e}"),
            });
        }
        Ok(EmbeddedBroker {
            tcp_addr,
            ws_addrs,
            shutdown,
            task: Some(task),
        })
    }

    /// The bound MQTT/TCP address (the real port when port 0 was asked for).
    #[must_use]
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The (first) bound WebSocket address, if a WebSocket listener was asked for.
    #[must_use]
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addrs.first().copied()
    }

    /// Every WebSocket listener's address, the first one as bound.
    #[must_use]
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws_addrs
    }

    /// Asks the broker to shut down and waits until it has (mqtt5 gives connections up to 5 s
    /// to close).
    pub async fn stop(mut self) {
        self.shutdown.shutdown();
        let Some(task) = self.task.take() else {
            return;
        };
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("MQTT broker stopped with an error: {e}"),
            Err(e) => tracing::warn!("MQTT broker task failed: {e}"),
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shutdown.shutdown();
        }
    }
}

/// The mqtt5 configuration behind [`EmbeddedBroker`].
fn broker_config(cfg: &EmbeddedBrokerConfig) -> BrokerConfig {
    let mut config = BrokerConfig::new()
        .with_bind_address(cfg.tcp_addr)
        .with_max_clients(MAX_CLIENTS)
        .with_max_packet_size(MAX_PACKET_SIZE)
        .with_client_channel_capacity(CLIENT_CHANNEL_CAPACITY)
        // The QoS 1/2 outbound window is min(this, the client's Receive Maximum).
        .with_max_outbound_inflight(u16::MAX)
        .with_sys_topics_enabled(false)
        .with_storage(
            StorageConfig::new()
                .with_backend(StorageBackend::Memory)
                .with_persistence(false)
                .with_max_queued_messages_per_client(MAX_QUEUED_MESSAGES),
        );
    config.shared_subscription_available = true;
    config.wildcard_subscription_available = true;
    config.max_outbound_rate_per_client = 0;
    config.max_message_rate_per_client = 0;
    config.max_bandwidth_per_client = 0;
    config.auth_config.allow_anonymous = true;
    // Only counts failed authentications, which anonymous access never has; off to be sure.
    config.auth_config.rate_limit.enabled = false;
    if let Some(ws_addr) = cfg.ws_addr {
        let mut addrs = vec![ws_addr];
        addrs.extend(&cfg.ws_extra);
        config = config.with_websocket(
            WebSocketConfig::new()
                .with_bind_addresses(addrs)
                .with_path(WS_PATH)
                .with_tls(false),
        );
    }
    config
}

/// Connection limits with nothing a load test could hit.
fn resource_limits() -> ResourceLimits {
    ResourceLimits {
        max_connections: MAX_CLIENTS,
        max_connections_per_ip: MAX_CLIENTS,
        max_message_rate_per_client: 0,
        max_bandwidth_per_client: 0,
        max_connection_rate: u32::MAX,
        // mqtt5 has no switch for its connection-rate limit; a zero window keeps its list of
        // recent accepts empty, which turns it off (message and bandwidth limits are 0 = off).
        rate_limit_window: mqtt5::time::Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid_and_load_test_friendly() {
        let cfg = EmbeddedBrokerConfig::loopback().with_loopback_ws();
        let config = broker_config(&cfg);
        assert!(config.validate().is_ok());
        assert!(!config.sys_topics_enabled);
        assert!(!config.storage_config.enable_persistence);
        assert!(config.auth_config.allow_anonymous);
        assert!(config.shared_subscription_available);
        assert!(config.max_packet_size >= 1024 * 1024);
        assert_eq!(config.bind_addresses, vec![cfg.tcp_addr]);
        let ws = config.websocket_config.as_ref().map(|ws| ws.path.as_str());
        assert_eq!(ws, Some(WS_PATH));
    }
}
