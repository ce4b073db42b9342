//! Error answers: always JSON `{"error": {"code", "message", "field"?}}` with a 4xx/5xx status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nethouse_api::{ApiError, ErrorBody, codes};

use crate::ipam::IpamError;

#[derive(Debug)]
pub struct ApiErr {
    pub status: StatusCode,
    pub error: ApiError,
}

impl ApiErr {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiErr {
            status,
            error: ApiError {
                code: code.to_string(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiErr::new(StatusCode::BAD_REQUEST, codes::INVALID_FIELD, message).with_field(field)
    }
}

impl From<IpamError> for ApiErr {
    fn from(e: IpamError) -> Self {
        let (status, code, field) = e.classify();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %e, "request failed");
        }
        let message = match &e {
            // The field is reported separately; keep the message about the problem.
            IpamError::Invalid(f) => format!("{}: {}", f.field, f.message),
            other => other.to_string(),
        };
        ApiErr {
            status,
            error: ApiError {
                code: code.to_string(),
                message,
                field,
            },
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.error })).into_response()
    }
}
