//! `GET /report` of a running loadgen: the report so far (the same JSON as `REPORT_JSON`, with
//! its lossless histograms), served next to a scenario's own endpoints, so `loadgen merge URL...`
//! and `make k8s-report` read a fleet while it runs.

use crate::report::Report;
use rr_common::http::Endpoints;
use std::sync::Arc;

/// The path the report is served at.
pub const PATH: &str = "/report";

/// A scenario's endpoints plus `GET /report`, built by `so_far` on each request.
pub struct WithReport<E, F> {
    inner: Arc<E>,
    so_far: F,
}

impl<E, F> WithReport<E, F>
where
    E: Endpoints,
    F: Fn() -> Report + Send + Sync + 'static,
{
    pub fn new(inner: Arc<E>, so_far: F) -> Self {
        WithReport { inner, so_far }
    }

    /// The report so far as JSON text.
    pub fn json(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec_pretty(&(self.so_far)())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}").into_bytes());
        body.push(b'\n');
        body
    }
}

impl<E, F> Endpoints for WithReport<E, F>
where
    E: Endpoints,
    F: Fn() -> Report + Send + Sync + 'static,
{
    fn metrics(&self) -> String {
        self.inner.metrics()
    }

    fn stats(&self) -> String {
        self.inner.stats()
    }

    fn ready(&self) -> bool {
        self.inner.ready()
    }

    fn other(&self, path: &str) -> Option<(&'static str, Vec<u8>)> {
        if path.split('?').next() == Some(PATH) {
            return Some(("application/json", self.json()));
        }
        self.inner.other(path)
    }
}
