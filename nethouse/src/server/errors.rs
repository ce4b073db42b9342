//! Error answers: always JSON `{"error": {"code", "message", "field"?}}` with a 4xx/5xx status.
//! The one place that decides which status and stable code each IPAM error gets.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nethouse_api::{ApiError, ErrorBody, codes};

use crate::ipam::IpamError;
use crate::store::StoreError;

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

/// (HTTP status, stable code, field) of an IPAM error.
pub fn classify(e: &IpamError) -> (StatusCode, &'static str, Option<String>) {
    let field = |f: &str| Some(f.to_string());
    match e {
        IpamError::Invalid(e) => (
            StatusCode::BAD_REQUEST,
            codes::INVALID_FIELD,
            field(&e.field),
        ),
        IpamError::UnknownZone { .. } => {
            (StatusCode::NOT_FOUND, codes::UNKNOWN_ZONE, field("zone"))
        }
        IpamError::ZoneExhausted { .. } => (StatusCode::CONFLICT, codes::ZONE_EXHAUSTED, None),
        IpamError::WrongZone { .. } => (StatusCode::CONFLICT, codes::WRONG_ZONE, field("zone")),
        IpamError::SubnetExists { .. } => {
            (StatusCode::CONFLICT, codes::SUBNET_EXISTS, field("name"))
        }
        IpamError::SubnetOverlap { .. } => {
            (StatusCode::CONFLICT, codes::SUBNET_OVERLAP, field("cidr"))
        }
        IpamError::SubnetInUse { .. } => (StatusCode::CONFLICT, codes::SUBNET_IN_USE, None),
        // Retried as its cause is: a lost race or a store that failed (both 503).
        IpamError::SubnetRemovalIncomplete { cause, .. } => classify(cause),
        IpamError::NotFound { .. } => (StatusCode::NOT_FOUND, codes::NOT_FOUND, None),
        IpamError::Contention { .. } => (StatusCode::SERVICE_UNAVAILABLE, codes::CONFLICT, None),
        IpamError::Store(StoreError::Decode { .. }) => {
            (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, None)
        }
        IpamError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, None),
        IpamError::Corrupt { .. } | IpamError::UnreadableKey { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, None)
        }
    }
}

impl From<IpamError> for ApiErr {
    fn from(e: IpamError) -> Self {
        let (status, code, field) = classify(&e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::KeyError;
    use crate::model::FieldError;

    #[test]
    fn every_ipam_error_has_its_status_code_and_field() {
        let s = |t: &str| t.to_string();
        let cases: Vec<(IpamError, u16, &str, Option<&str>)> = vec![
            (
                FieldError::new("limit", "too big").into(),
                400,
                codes::INVALID_FIELD,
                Some("limit"),
            ),
            (
                IpamError::UnknownZone { zone: s("z") },
                404,
                codes::UNKNOWN_ZONE,
                Some("zone"),
            ),
            (
                IpamError::ZoneExhausted {
                    zone: s("z"),
                    detail: s("d"),
                },
                409,
                codes::ZONE_EXHAUSTED,
                None,
            ),
            (
                IpamError::WrongZone {
                    owner: s("o"),
                    ips: s("i"),
                    lease_zone: s("a"),
                    requested_zone: s("b"),
                },
                409,
                codes::WRONG_ZONE,
                Some("zone"),
            ),
            (
                IpamError::SubnetExists { name: s("n") },
                409,
                codes::SUBNET_EXISTS,
                Some("name"),
            ),
            (
                IpamError::SubnetOverlap {
                    name: s("n"),
                    cidr: s("c"),
                    other: s("o"),
                    other_cidr: s("oc"),
                },
                409,
                codes::SUBNET_OVERLAP,
                Some("cidr"),
            ),
            (
                IpamError::SubnetInUse {
                    name: s("n"),
                    leases: 1,
                },
                409,
                codes::SUBNET_IN_USE,
                None,
            ),
            (
                IpamError::NotFound { what: s("w") },
                404,
                codes::NOT_FOUND,
                None,
            ),
            (
                IpamError::Contention {
                    key: s("k"),
                    lost: s("i"),
                },
                503,
                codes::CONFLICT,
                None,
            ),
            (StoreError::Closed.into(), 503, codes::UNAVAILABLE, None),
            (
                IpamError::SubnetRemovalIncomplete {
                    name: s("n"),
                    deleted: 127,
                    records: 300,
                    cause: Box::new(StoreError::Closed.into()),
                },
                503,
                codes::UNAVAILABLE,
                None,
            ),
            (
                IpamError::SubnetRemovalIncomplete {
                    name: s("n"),
                    deleted: 127,
                    records: 300,
                    cause: Box::new(IpamError::Contention {
                        key: s("k"),
                        lost: s("i"),
                    }),
                },
                503,
                codes::CONFLICT,
                None,
            ),
            (
                StoreError::Decode {
                    key: s("k"),
                    message: s("m"),
                }
                .into(),
                500,
                codes::INTERNAL,
                None,
            ),
            (
                IpamError::Corrupt {
                    key: s("k"),
                    message: s("m"),
                },
                500,
                codes::INTERNAL,
                None,
            ),
            (
                IpamError::UnreadableKey {
                    key: s("x"),
                    source: KeyError::UnknownPrefix,
                },
                500,
                codes::INTERNAL,
                None,
            ),
        ];
        for (e, status, code, field) in cases {
            let (got_status, got_code, got_field) = classify(&e);
            assert_eq!(
                (got_status.as_u16(), got_code, got_field.as_deref()),
                (status, code, field),
                "{e}"
            );
        }
    }

    #[test]
    fn an_invalid_field_is_named_apart_from_the_message() {
        let e = ApiErr::from(IpamError::from(FieldError::new("zone", "is empty")));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.error.field.as_deref(), Some("zone"));
        assert_eq!(e.error.message, "zone: is empty");
    }
}
