//! Fan-out scenario (WebSocket gateway case): placeholder until the fanout engine lands.

use crate::config::Config;
use clap::Args;
use rr_common::cli::ConfigError;

/// Fan-out settings.
#[derive(Args, Clone, Debug, Default)]
pub struct FanoutConfig {}

impl FanoutConfig {
    pub fn validate(&self, _cfg: &Config) -> Result<(), ConfigError> {
        Err(ConfigError::new(
            "SCENARIO",
            "fanout is not implemented yet",
        ))
    }
    pub fn describe(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
}
