//! One error type for every HTTP answer that is not a success: a status and
//! a message (plus, for bad records, which ones), as JSON.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use vigil_runtime::error::RegistryError;
use vigil_runtime::input::body::BodyError;

use crate::service::http::BodyRefused;

/// A refused request: `{"error": message}` (and `"errors"` for records).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The bad records behind a 400, when there are some.
    pub records: Vec<RecordError>,
}

/// One bad record of a body.
#[derive(Debug, Clone, Serialize)]
pub struct RecordError {
    /// 0-based position in the body.
    pub index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), records: Vec::new() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.records.is_empty() {
            json!({"error": self.message})
        } else {
            json!({"error": self.message, "errors": self.records})
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match e {
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::NoPrevious(_) | RegistryError::NotActive(_) => StatusCode::CONFLICT,
        };
        Self::new(status, e.to_string())
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::TooManyRecords(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl From<BodyRefused> for ApiError {
    fn from(r: BodyRefused) -> Self {
        Self::new(r.status, r.message)
    }
}
