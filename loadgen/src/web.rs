//! The web dashboard page, served at `/` by every scenario (it reads `/stats`).

/// The dashboard: one self-contained HTML page.
pub const DASHBOARD_HTML: &str = include_str!("web/dashboard.html");
