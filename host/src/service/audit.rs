//! The audit log: an append-only NDJSON file of reloads and admin actions,
//! each with the time, the plugin, the files' digests and (for admin
//! actions) the token's name.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;
use vigil_runtime::error::Error;
use vigil_runtime::util::{lock, now_ms};

pub struct Audit {
    file: Mutex<std::fs::File>,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("audit log {}", path.display()), e))?;
        Ok(Self { file: Mutex::new(f) })
    }

    /// Appends `event` (a JSON object) with the time, and logs it.
    pub fn record(&self, mut event: serde_json::Value) {
        event["time_ms"] = json!(now_ms());
        tracing::info!(target: "vigil::audit", "{event}");
        let _ = writeln!(lock(&self.file), "{event}");
    }
}
