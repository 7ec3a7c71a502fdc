//! The library's error types. Every plugin error names its plugin; every
//! input error names its line (or record) and field.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The runtime's error: bad configuration, a plugin failure, bad input or I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (or a file it names) is invalid or unreadable.
    #[error("config: {0}")]
    Config(String),
    /// A plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A request record was refused.
    #[error(transparent)]
    BadInput(#[from] BadInput),
    // The cause is part of the message and deliberately not a `source`,
    // so `{:#}` does not print it twice.
    /// An I/O error, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done (`reading input`, a file's path).
        context: String,
        /// The I/O error itself.
        cause: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`]: `cause`, met while doing `context`.
    pub fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Error::Io { context: context.into(), cause }
    }
}

/// Why an operation on the live plugin set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No plugin has this name.
    #[error("no plugin named {0:?}")]
    NotFound(String),
    /// The plugin has no previous version to roll back to.
    #[error("{0}: no previous version to roll back to")]
    NoPrevious(String),
    /// The plugin has no version serving (its files never loaded).
    #[error("{0}: not active")]
    NotActive(String),
}

/// What went wrong with a plugin, as reported in verdicts and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The `.wasm` is not a valid component of the `detector` world.
    Load,
    /// The manifest is missing or invalid.
    Manifest,
    /// The signature is missing, invalid or not by a trusted key.
    Signature,
    /// `init` returned an error or trapped.
    Init,
    /// The batch ran past the plugin's time limit.
    Timeout,
    /// The plugin trapped (panic, unreachable, stack overflow, ...).
    Trap,
    /// The plugin tried to grow past its memory limit.
    Memory,
    /// The plugin's output broke the contract (count, score range, sizes).
    InvalidOutput,
    /// The plugin returned an error for the batch.
    PluginError,
    /// The plugin is sitting out after repeated failures.
    Quarantined,
}

impl ErrorKind {
    /// The kind's name, as serialized (`invalid-output`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Load => "load",
            ErrorKind::Manifest => "manifest",
            ErrorKind::Signature => "signature",
            ErrorKind::Init => "init",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Trap => "trap",
            ErrorKind::Memory => "memory",
            ErrorKind::InvalidOutput => "invalid-output",
            ErrorKind::PluginError => "plugin-error",
            ErrorKind::Quarantined => "quarantined",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin's failure: which plugin, what kind, and what happened.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}: {kind}: {message}")]
pub struct PluginError {
    /// The plugin's name.
    pub plugin: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for a person to read.
    pub message: String,
    /// The same files may load later: the failure came from the moment
    /// (a full instance pool, a timeout under load), not from the files.
    pub transient: bool,
}

impl PluginError {
    /// A failure of `plugin`; transient if it is a timeout.
    pub fn new(plugin: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { plugin: plugin.into(), kind, message: message.into(), transient: kind == ErrorKind::Timeout }
    }

    /// Marks the failure as one that may pass.
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }
}

/// A request record that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("line {line}{}: {message}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
pub struct BadInput {
    /// 1-based line number (or record index + 1 for HTTP bodies).
    pub line: u64,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}
