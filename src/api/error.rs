//! A failed command: its HTTP-like status and one-line message, from the service's errors.

use serde_json::Value;

/// A failed command: an HTTP-like status and the one-line message the UI shows as is.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: 409,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Service errors are nearly always about the request (a missing file, an unknown id), and the
/// UI shows the message either way; the cause chain is joined into one line.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let message = format!("{e:#}").replace('\n', " ");
        if e.downcast_ref::<crate::service::NotFound>().is_some() {
            return ApiError::not_found(message);
        }
        if e.downcast_ref::<crate::runs::lease::RunBusy>().is_some() {
            return ApiError::conflict(message);
        }
        ApiError::bad(message)
    }
}

impl From<evolve_store::StoreError> for ApiError {
    fn from(e: evolve_store::StoreError) -> Self {
        ApiError::bad(e.to_string().replace('\n', " "))
    }
}

pub type ApiResult<T = Value> = Result<T, ApiError>;
