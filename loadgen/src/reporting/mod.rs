//! Reports people look at: lossless histograms in the JSON report, exact merge of several
//! instances' reports, comparison of two runs with regression rules, and the self-contained
//! HTML report (server-side SVG charts) generated from the JSON.

pub mod charts;
pub mod cli;
pub mod compare;
pub mod figures;
pub mod hist;
pub mod html;
pub mod live;
pub mod load;
pub mod merge;
pub mod run;
pub mod start_at;
pub mod timeline;

pub use load::{LoadedReport, ReportError};
