//! The admin API (plugins, cases, rollback, mode), behind bearer tokens, and
//! the API changes that must outlive a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use vigil_runtime::plugin::files::Fingerprint;
use vigil_runtime::plugin::manifest::Mode;
use vigil_runtime::registry::Registry;
use vigil_runtime::score::cases::Cases;
use vigil_runtime::util::lock;

use crate::service::App;
use crate::service::api::ApiError;

/// A request bearing a valid admin token; holds the token's name (for the
/// audit log).
pub struct Admin(pub String);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if app.tokens.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin endpoints are disabled: set server.admin_token or VIGIL_ADMIN_TOKEN",
            ));
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        app.tokens
            .iter()
            .find(|(_, t)| bool::from(t.as_bytes().ct_eq(given.as_bytes())))
            .map(|(n, _)| Admin(n.clone()))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer TOKEN` is required"))
    }
}

pub async fn plugins(State(app): State<Arc<App>>, _: Admin) -> Json<Value> {
    Json(json!({"plugins": app.registry.status()}))
}

pub async fn cases(State(app): State<Arc<App>>, _: Admin) -> Json<Cases> {
    Json(lock(&app.cases).cases())
}

pub async fn rollback(
    State(app): State<Arc<App>>,
    Admin(token): Admin,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = app.registry.rollback(&name)?;
    app.audit.record(json!({"event": "rollback", "plugin": name, "token": token,
        "old_sha256": from.plugin.wasm_sha256, "new_sha256": to.plugin.wasm_sha256,
        "old_digest": &*from.plugin.digest, "new_digest": &*to.plugin.digest}));
    app.metrics.add("vigil_admin_actions_total", vec![("action", "rollback".into())], 1.0);
    Ok(Json(json!({"plugin": name, "from": &*from.plugin.digest, "to": &*to.plugin.digest,
        "version": &*to.plugin.version})))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: Mode,
}

pub async fn set_mode(
    State(app): State<Arc<App>>,
    Admin(token): Admin,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Ok(ModeBody { mode }) = serde_json::from_slice(&body) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body must be {\"mode\": \"enforce\"} or {\"mode\": \"monitor\"}",
        ));
    };
    let (old, w) = app.registry.set_mode(&name, mode)?;
    if let Some(files) = app.registry.tried(&name) {
        app.overrides.set(&name, mode, files);
    }
    app.audit.record(json!({"event": "mode", "plugin": name, "token": token, "old_mode": old, "new_mode": mode,
        "old_sha256": w.plugin.wasm_sha256, "new_sha256": w.plugin.wasm_sha256}));
    app.metrics.add("vigil_admin_actions_total", vec![("action", "mode".into())], 1.0);
    Ok(Json(json!({"plugin": name, "mode": mode})))
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

    fn set(&self, name: &str, mode: Mode, files: Fingerprint) {
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
