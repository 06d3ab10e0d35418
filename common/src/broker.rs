//! Broker addresses and connection options: URL parsing (`mqtt://`, `mqtts://`, `ws://`, `wss://`
//! and aliases; `nats://` and `tls://` for NATS; `kafka://` and `kafka+ssl://` for Kafka), MQTT
//! version, credentials, TLS files and Kafka client settings, shared by every binary.

use crate::cli::ConfigError;
use clap::Args;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How bytes reach the broker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Tcp,
    Tls,
    Ws,
    Wss,
    /// NATS over TCP (`nats://`).
    Nats,
    /// NATS over TLS (`tls://`): the client upgrades after the server's INFO.
    NatsTls,
    /// Kafka (`kafka://`), through librdkafka.
    Kafka,
    /// Kafka over TLS (`kafka+ssl://`); librdkafka does the TLS.
    KafkaTls,
}

impl Scheme {
    /// Our own TLS (rustls) carries the connection (not Kafka's: librdkafka does its own).
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Tls | Scheme::Wss | Scheme::NatsTls)
    }
    pub fn is_ws(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
    /// The broker speaks NATS, not MQTT.
    pub fn is_nats(self) -> bool {
        matches!(self, Scheme::Nats | Scheme::NatsTls)
    }
    /// The broker speaks Kafka (librdkafka owns the connections).
    pub fn is_kafka(self) -> bool {
        matches!(self, Scheme::Kafka | Scheme::KafkaTls)
    }
}

/// A parsed broker URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Path for WebSocket URLs (`/mqtt` when none is given); for Kafka the whole bootstrap list
    /// (`host:port,host2:port`, `host` and `port` being its first broker); empty otherwise.
    pub path: String,
}

impl BrokerUrl {
    /// The Kafka bootstrap brokers of a `kafka://` or `kafka+ssl://` URL.
    pub fn kafka(&self) -> Option<crate::kafka::KafkaUrl> {
        if !self.scheme.is_kafka() {
            return None;
        }
        let scheme = if self.scheme == Scheme::KafkaTls {
            "kafka+ssl"
        } else {
            "kafka"
        };
        format!("{scheme}://{}", self.path).parse().ok()
    }

    /// `host:port` as used for TCP connect.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL of the WebSocket upgrade request.
    pub fn ws_url(&self) -> String {
        let s = if self.scheme == Scheme::Wss {
            "wss"
        } else {
            "ws"
        };
        format!("{s}://{}{}", self.authority(), self.path)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.scheme {
            Scheme::Tcp => "mqtt",
            Scheme::Tls => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Nats => "nats",
            Scheme::NatsTls => "tls",
            Scheme::Kafka => return write!(f, "kafka://{}", self.path),
            Scheme::KafkaTls => return write!(f, "kafka+ssl://{}", self.path),
        };
        write!(f, "{s}://{}{}", self.authority(), self.path)
    }
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ACCEPTED: &str = "expected mqtt://host:port, tcp://, mqtts://, ssl://, \
             ws://host:port/path, wss://, nats://host:port, tls://host:port (NATS over TLS), \
             kafka://host:port[,host2:port] or kafka+ssl://host:port[,...]";
        if crate::kafka::KafkaUrl::is_kafka(s) {
            let k: crate::kafka::KafkaUrl = s.parse()?;
            let (host, port) = k.brokers[0].clone();
            return Ok(BrokerUrl {
                scheme: if k.tls {
                    Scheme::KafkaTls
                } else {
                    Scheme::Kafka
                },
                host,
                port,
                path: k.bootstrap_servers(),
            });
        }
        let url = url::Url::parse(s.trim()).map_err(|e| format!("{e}; {ACCEPTED}"))?;
        let (scheme, default_port) = match url.scheme() {
            "mqtt" | "tcp" => (Scheme::Tcp, 1883),
            "mqtts" | "ssl" => (Scheme::Tls, 8883),
            "ws" => (Scheme::Ws, 80),
            "wss" => (Scheme::Wss, 443),
            "nats" => (Scheme::Nats, 4222),
            "tls" => (Scheme::NatsTls, 4222),
            other => return Err(format!("unknown scheme '{other}'; {ACCEPTED}")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("no host; {ACCEPTED}"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(default_port);
        let path = if scheme.is_ws() {
            match url.path() {
                "" | "/" if s.trim_end().ends_with('/') => "/".to_string(),
                "" | "/" => "/mqtt".to_string(),
                p => p.to_string(),
            }
        } else {
            String::new()
        };
        Ok(BrokerUrl {
            scheme,
            host,
            port,
            path,
        })
    }
}

/// MQTT protocol level of a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// MQTT 3.1.1
    V4,
    /// MQTT 5
    V5,
}

/// MQTT protocol version as configured (`5` or `3`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MqttVersion(pub Protocol);

impl std::str::FromStr for MqttVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "5" | "5.0" => Ok(MqttVersion(Protocol::V5)),
            "3" | "3.1.1" | "4" => Ok(MqttVersion(Protocol::V4)),
            _ => Err("expected 5 (MQTT 5) or 3 (MQTT 3.1.1)".into()),
        }
    }
}

impl fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Protocol::V5 => f.write_str("5"),
            Protocol::V4 => f.write_str("3"),
        }
    }
}

/// A secret string: never printed by `Debug`, `Display` or serialization.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The broker and how to reach it: every binary flattens these from the environment, so the
/// broker URL, protocol version, credentials, TLS files and timeouts are defined once.
#[derive(Args, Clone, Debug)]
pub struct ConnectOptions {
    /// Broker URL: mqtt://host:port (tcp://), mqtts:// (ssl://), ws://host:port/path, wss://; nats://host:port or tls://host:port for NATS; kafka://host:port[,host2:port] or kafka+ssl:// for Kafka (the worker also reads MQTT_BROKER)
    #[arg(
        long,
        env = "BROKER",
        default_value = "mqtt://127.0.0.1:1883",
        value_name = "BROKER"
    )]
    pub broker: BrokerUrl,
    /// MQTT protocol version: 5 or 3 (3.1.1)
    #[arg(
        long = "mqtt-version",
        env = "MQTT_VERSION",
        default_value = "5",
        value_name = "MQTT_VERSION"
    )]
    pub mqtt_version: MqttVersion,
    /// Username for broker authentication, MQTT or NATS (unset = anonymous)
    #[arg(long, env = "BROKER_USERNAME", value_name = "BROKER_USERNAME")]
    pub broker_username: Option<String>,
    /// Password for broker authentication (never logged or reported)
    #[arg(
        long,
        env = "BROKER_PASSWORD",
        hide_env_values = true,
        value_name = "BROKER_PASSWORD"
    )]
    pub broker_password: Option<Secret>,
    /// Alias of BROKER_USERNAME
    #[arg(long, env = "MQTT_USERNAME", value_name = "MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// Alias of BROKER_PASSWORD (never logged or reported)
    #[arg(
        long,
        env = "MQTT_PASSWORD",
        hide_env_values = true,
        value_name = "MQTT_PASSWORD"
    )]
    pub mqtt_password: Option<Secret>,
    /// CA certificate (PEM) to verify the broker with mqtts:// and wss:// [default: the system trust store]
    #[arg(long, env = "TLS_CA_FILE", value_name = "TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS
    #[arg(long, env = "TLS_CERT_FILE", value_name = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS
    #[arg(long, env = "TLS_KEY_FILE", value_name = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Skip broker certificate verification (testing only)
    #[arg(long, env = "TLS_INSECURE", default_value_t = false, value_name = "TLS_INSECURE", action = clap::ArgAction::Set)]
    pub tls_insecure: bool,
    /// Keep-alive in seconds (MQTT keep-alive; the NATS client's PING interval)
    #[arg(
        long,
        env = "KEEP_ALIVE_SEC",
        default_value_t = 30,
        value_name = "KEEP_ALIVE_SEC"
    )]
    pub keep_alive_sec: u16,
    /// Time allowed for TCP+TLS+MQTT connect handshake, in milliseconds
    #[arg(
        long,
        env = "CONNECT_TIMEOUT_MS",
        default_value_t = 5000,
        value_name = "CONNECT_TIMEOUT_MS"
    )]
    pub connect_timeout_ms: u64,
    /// How long start-up keeps retrying an unreachable broker before giving up with exit status 3, in milliseconds
    #[arg(
        long,
        env = "CONNECT_RETRY_MS",
        default_value_t = 30000,
        value_name = "CONNECT_RETRY_MS"
    )]
    pub connect_retry_ms: u64,
    /// Kafka: librdkafka properties applied last, key=value,... (e.g. linger.ms=5,acks=1); an unknown one exits 2
    #[arg(
        long,
        env = "KAFKA_CONFIG",
        default_value = "",
        value_name = "KAFKA_CONFIG"
    )]
    pub kafka_config: String,
    /// Kafka: SASL mechanism used with BROKER_USERNAME: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    #[arg(
        long,
        env = "KAFKA_SASL_MECHANISM",
        default_value = "PLAIN",
        value_name = "KAFKA_SASL_MECHANISM"
    )]
    pub kafka_sasl_mechanism: crate::kafka::SaslMechanism,
    /// Kafka: partitions of the topics a run creates when the cluster lacks them (request topic, fan-out topics); existing topics are used as they are
    #[arg(
        long,
        env = "KAFKA_PARTITIONS",
        default_value_t = 8,
        value_name = "KAFKA_PARTITIONS"
    )]
    pub kafka_partitions: u32,
}

impl ConnectOptions {
    pub fn protocol(&self) -> Protocol {
        self.mqtt_version.0
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }
    /// BROKER_USERNAME, else its alias MQTT_USERNAME.
    pub fn username(&self) -> Option<&str> {
        self.broker_username
            .as_deref()
            .or(self.mqtt_username.as_deref())
    }
    /// BROKER_PASSWORD, else its alias MQTT_PASSWORD.
    pub fn password(&self) -> Option<&str> {
        self.broker_password
            .as_ref()
            .or(self.mqtt_password.as_ref())
            .map(|s| s.0.as_str())
    }

    /// Settings as `(name, value)` pairs for reports, typed, with secrets redacted.
    pub fn describe(&self) -> Vec<(&'static str, serde_json::Value)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .into()
        };
        vec![
            ("BROKER", self.broker.to_string().into()),
            ("MQTT_VERSION", self.mqtt_version.to_string().into()),
            (
                "BROKER_USERNAME",
                self.username().unwrap_or_default().into(),
            ),
            (
                "BROKER_PASSWORD",
                if self.password().is_some() {
                    "<redacted>"
                } else {
                    ""
                }
                .into(),
            ),
            ("TLS_CA_FILE", path(&self.tls_ca_file)),
            ("TLS_CERT_FILE", path(&self.tls_cert_file)),
            ("TLS_KEY_FILE", path(&self.tls_key_file)),
            ("TLS_INSECURE", self.tls_insecure.into()),
            ("KEEP_ALIVE_SEC", self.keep_alive_sec.into()),
            ("CONNECT_TIMEOUT_MS", self.connect_timeout_ms.into()),
            ("CONNECT_RETRY_MS", self.connect_retry_ms.into()),
            ("KAFKA_CONFIG", self.kafka_config.clone().into()),
            (
                "KAFKA_SASL_MECHANISM",
                self.kafka_sasl_mechanism.as_str().into(),
            ),
            ("KAFKA_PARTITIONS", self.kafka_partitions.into()),
        ]
    }

    /// Checks combinations that clap cannot, naming the variable.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::new(
                "TLS_CERT_FILE",
                "TLS_CERT_FILE and TLS_KEY_FILE must be set together",
            ));
        }
        for (name, p) in [
            ("TLS_CA_FILE", &self.tls_ca_file),
            ("TLS_CERT_FILE", &self.tls_cert_file),
            ("TLS_KEY_FILE", &self.tls_key_file),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    return Err(ConfigError::new(
                        name,
                        format!("'{}' is not a readable file", p.display()),
                    ));
                }
            }
        }
        if self.broker_username.is_some()
            && self.mqtt_username.is_some()
            && self.broker_username != self.mqtt_username
        {
            return Err(ConfigError::new(
                "BROKER_USERNAME",
                "differs from its alias MQTT_USERNAME: set one of them",
            ));
        }
        if self.broker_password.is_some()
            && self.mqtt_password.is_some()
            && self.broker_password != self.mqtt_password
        {
            return Err(ConfigError::new(
                "BROKER_PASSWORD",
                "differs from its alias MQTT_PASSWORD: set one of them",
            ));
        }
        if self.password().is_some() && self.username().is_none() {
            return Err(ConfigError::new(
                "BROKER_USERNAME",
                "BROKER_PASSWORD (or MQTT_PASSWORD) is set but BROKER_USERNAME (or MQTT_USERNAME) is not",
            ));
        }
        if self.keep_alive_sec == 0 {
            return Err(ConfigError::new("KEEP_ALIVE_SEC", "'0' must be at least 1"));
        }
        if self.kafka_partitions == 0 || self.kafka_partitions > 10_000 {
            return Err(ConfigError::new(
                "KAFKA_PARTITIONS",
                format!("'{}' must be 1..=10000", self.kafka_partitions),
            ));
        }
        if self.broker.scheme.is_kafka() {
            crate::kafka::link::check_config(self)
                .map_err(|e| ConfigError::new("KAFKA_CONFIG", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_schemes() {
        let u: BrokerUrl = "mqtt://localhost:1884".parse().unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Tcp, "localhost", 1884)
        );
        let u: BrokerUrl = "tcp://10.0.0.1".parse().unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Tcp, 1883));
        let u: BrokerUrl = "ssl://h:8884".parse().unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Tls, 8884));
        let u: BrokerUrl = "mqtts://h".parse().unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Tls, 8883));
        let u: BrokerUrl = "ws://h:8083/mqtt".parse().unwrap();
        assert_eq!((u.scheme, u.path.as_str()), (Scheme::Ws, "/mqtt"));
        assert_eq!(u.ws_url(), "ws://h:8083/mqtt");
        let u: BrokerUrl = "wss://h".parse().unwrap();
        assert_eq!(
            (u.scheme, u.port, u.path.as_str()),
            (Scheme::Wss, 443, "/mqtt")
        );
        let u: BrokerUrl = "mqtt://[::1]:1883".parse().unwrap();
        assert_eq!(u.authority(), "[::1]:1883");
    }

    #[test]
    fn parses_nats_schemes() {
        let u: BrokerUrl = "nats://h".parse().unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Nats, 4222));
        assert!(u.scheme.is_nats() && !u.scheme.is_tls());
        assert_eq!(u.to_string(), "nats://h:4222");
        let u: BrokerUrl = "tls://h:4443".parse().unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::NatsTls, 4443));
        assert!(u.scheme.is_nats() && u.scheme.is_tls() && !u.scheme.is_ws());
        assert_eq!(u.to_string(), "tls://h:4443");
        assert_eq!(u.path, "");
    }

    #[test]
    fn parses_kafka_schemes() {
        let u: BrokerUrl = "kafka://h1,h2:9093".parse().unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Kafka, "h1", 9092)
        );
        assert!(u.scheme.is_kafka() && !u.scheme.is_tls() && !u.scheme.is_nats());
        assert_eq!(u.to_string(), "kafka://h1:9092,h2:9093");
        assert_eq!(u.kafka().unwrap().brokers.len(), 2);
        let u: BrokerUrl = "kafka+ssl://h:9094".parse().unwrap();
        assert_eq!(u.scheme, Scheme::KafkaTls);
        assert!(u.kafka().unwrap().tls);
        assert_eq!(u.to_string(), "kafka+ssl://h:9094");
        assert!("kafka://u:p@h".parse::<BrokerUrl>().is_err());
        assert!("mqtt://h".parse::<BrokerUrl>().unwrap().kafka().is_none());
    }

    #[test]
    fn broker_credentials_and_their_mqtt_aliases() {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            c: ConnectOptions,
        }
        let parse = |args: &[&str]| {
            let mut v = vec!["t"];
            v.extend_from_slice(args);
            <T as clap::Parser>::try_parse_from(v).unwrap().c
        };
        let c = parse(&["--broker-username=a", "--broker-password=p"]);
        assert_eq!((c.username(), c.password()), (Some("a"), Some("p")));
        c.check().unwrap();
        let c = parse(&["--mqtt-username=a", "--mqtt-password=p"]);
        assert_eq!((c.username(), c.password()), (Some("a"), Some("p")));
        let described = format!("{:?}", c.describe());
        assert!(described.contains("BROKER_PASSWORD") && !described.contains("\"p\""));
        // the same value under both names is fine; different ones are refused
        parse(&["--broker-username=a", "--mqtt-username=a"])
            .check()
            .unwrap();
        let e = parse(&["--broker-username=a", "--mqtt-username=b"])
            .check()
            .unwrap_err();
        assert_eq!(e.var, "BROKER_USERNAME");
        let e = parse(&[
            "--broker-username=a",
            "--broker-password=sekrit1",
            "--mqtt-password=sekrit2",
        ])
        .check()
        .unwrap_err();
        assert_eq!(e.var, "BROKER_PASSWORD");
        assert!(!e.to_string().contains("sekrit"), "{e}");
        let e = parse(&["--mqtt-password=p"]).check().unwrap_err();
        assert_eq!(e.var, "BROKER_USERNAME");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "localhost:1883",
            "http://h:1",
            "mqtt://",
            "mqtt://h:99999",
            "ws//x",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_is_redacted() {
        let s: Secret = "hunter2".parse().unwrap();
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}
