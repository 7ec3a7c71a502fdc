//! vigil: a host for sandboxed WebAssembly security detectors.
//!
//! Data flows one way: `record` (NDJSON in) -> `batch` -> `pipeline` (every
//! plugin's `worker`, on an `engine` instance with host `state`) -> `combine`
//! -> verdicts out. `registry` loads the plugin set from a directory with
//! each plugin's `manifest`; `cli` is the command line.

pub mod admit;
pub mod batch;
pub mod body;
pub mod bundled;
pub mod cases;
pub mod check;
pub mod cli;
pub mod combine;
pub mod compile_cache;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod fuzzing;
pub mod guardrail;
pub mod handles;
pub mod http;
pub mod manifest;
pub mod metrics;
mod output;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod reload;
pub mod serve;
pub mod state;
pub mod trust;
pub mod worker;

pub use config::Config;
pub use error::{BadInput, Error, ErrorKind, PluginError};
