//! Admin access (bearer tokens, compared in constant time) and the API
//! changes that must outlive a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use vigil_runtime::config::Config;
use vigil_runtime::plugin::files::Fingerprint;
use vigil_runtime::plugin::manifest::Mode;
use vigil_runtime::registry::Registry;
use vigil_runtime::util::lock;

use crate::service::api::ApiError;

/// The admin tokens by name; `check` says whose a request's is.
pub struct Tokens(Vec<(String, String)>);

impl Tokens {
    /// `server.admin_tokens`, and `server.admin_token` (named "config");
    /// the `vigil` command adds `VIGIL_ADMIN_TOKEN` as "env".
    pub fn from_config(config: &Config) -> Self {
        let mut t: Vec<(String, String)> =
            config.server.admin_tokens.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(tok) = &config.server.admin_token {
            t.push(("config".into(), tok.clone()));
        }
        t.retain(|(_, tok)| !tok.is_empty());
        Self(t)
    }

    /// The name of the token in an `Authorization: Bearer TOKEN` header.
    pub fn check(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        if self.0.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin endpoints are disabled: set server.admin_token or VIGIL_ADMIN_TOKEN",
            ));
        }
        let given = authorization.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        self.0
            .iter()
            .find(|(_, t)| bool::from(t.as_bytes().ct_eq(given.as_bytes())))
            .map(|(n, _)| n.clone())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer TOKEN` is required"))
    }
}

/// API mode changes, kept in the state directory so they hold across a
/// restart, until the plugin's files change (then they are superseded, as
/// the directory is the source of truth).
pub struct Overrides {
    path: PathBuf,
    modes: Mutex<BTreeMap<String, ModeOverride>>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ModeOverride {
    mode: Mode,
    /// The files the change was made on.
    files: Fingerprint,
}

impl Overrides {
    pub fn open(path: &Path) -> Self {
        let modes = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!("{}: {e}; API mode changes from before the restart are not restored", path.display());
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self { path: path.to_path_buf(), modes: Mutex::new(modes) }
    }

    /// Applies the saved modes whose plugin still has the same files, and
    /// forgets the others.
    pub fn reapply(&self, registry: &Registry) {
        let mut modes = lock(&self.modes);
        modes.retain(|name, o| {
            let same = registry.tried(name).as_ref() == Some(&o.files) && registry.set_mode(name, o.mode).is_ok();
            if same {
                tracing::info!(plugin = name, mode = o.mode.as_str(), "API mode change restored");
            }
            same
        });
        self.write(&modes);
    }

    pub fn set(&self, name: &str, mode: Mode, files: Fingerprint) {
        let mut modes = lock(&self.modes);
        modes.insert(name.to_string(), ModeOverride { mode, files });
        self.write(&modes);
    }

    fn write(&self, modes: &BTreeMap<String, ModeOverride>) {
        let tmp = self.path.with_extension("tmp");
        let res = serde_json::to_vec_pretty(modes)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            tracing::error!("{}: {e}; an API mode change will not survive a restart", self.path.display());
        }
    }
}
