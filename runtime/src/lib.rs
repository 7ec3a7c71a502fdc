//! The vigil runtime: what a program embeds to score request batches with
//! sandboxed WebAssembly detectors. No HTTP server, command line, file
//! watcher or simulator lives here; the `vigil` binary adds those.
//!
//! Data flows one way, and so do the imports (each module uses only those
//! listed before it):
//!
//! - [`util`], [`error`], [`config`], [`metrics`]: what every layer uses.
//! - [`input`]: bytes -> request records (lines, HTTP bodies) and the
//!   admission checks (event-time window, recent ids).
//! - [`state`]: durable per-plugin host state, bounded, snapshotted (and,
//!   in a cluster, a partition's share of it).
//! - [`batch`]: records -> a batch, with identity handles computed once.
//! - [`plugin`]: a plugin package: files, manifest, signature, smoke batch.
//! - [`engine`]: wasmtime, the host interface, a worker per plugin version.
//! - [`registry`]: the live plugin set, swapped whole; loading and the
//!   reconciler that keeps it in line with a directory.
//! - [`score`]: batches through every plugin -> combined verdicts -> cases.

#![warn(missing_docs)]

pub mod util;

pub mod config;
pub mod error;
pub mod metrics;

pub mod input;

pub mod state;

pub mod batch;

pub mod plugin;

pub mod engine;

pub mod registry;

pub mod score;

pub mod fuzzing;

pub use config::Config;
pub use error::{BadInput, Error, ErrorKind, PluginError};
