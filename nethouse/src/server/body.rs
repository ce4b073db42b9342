//! Request decoding that names the offending field: JSON bodies and query strings go through
//! serde_path_to_error, so `{"attachment": {"node": 7}}` answers `field: "attachment.node"`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use nethouse_api::codes;
use serde::de::DeserializeOwned;

use super::errors::ApiErr;

/// Largest accepted body; a GC list of 10,000 attachments fits comfortably.
pub const MAX_BODY: usize = 4 << 20;

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiErr> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            // axum enforces MAX_BODY (DefaultBodyLimit) and answers 413 for a larger body.
            let status = e.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                codes::PAYLOAD_TOO_LARGE
            } else {
                codes::INVALID_JSON
            };
            ApiErr::new(status, code, format!("reading the body: {}", e.body_text()))
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiErr> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let err = ApiErr::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_JSON,
            message.clone(),
        );
        match field_of(&path, &message) {
            Some(f) if !inner.is_syntax() && !inner.is_eof() => err.with_field(f),
            _ => err,
        }
    })
}

/// Query strings decoded with the same field reporting.
pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, ApiErr> {
    let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    let de = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let field = field_of(&path, &message).unwrap_or_else(|| "query".into());
        ApiErr::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_FIELD,
            format!("query: {message}"),
        )
        .with_field(field)
    })
}

/// The field a decode error is about: the path serde reached (for an unknown field that path
/// already ends in the field's name); for a missing field, its name under that path.
fn field_of(path: &str, message: &str) -> Option<String> {
    let parent = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.split('`').next()
    {
        return Some(if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        });
    }
    (!parent.is_empty()).then(|| parent.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nethouse_api::{AllocateRequest, LeaseFilter};

    fn field<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (Option<String>, String) {
        let e = parse_json::<T>(body.as_bytes()).unwrap_err();
        (e.error.field, e.error.message)
    }

    #[test]
    fn json_errors_name_the_field() {
        let ok = r#"{"zone":"z","kind":"fixed","attachment":{"container_id":"c","ifname":"eth0","node":"n"}}"#;
        assert!(parse_json::<AllocateRequest>(ok.as_bytes()).is_ok());
        let (f, m) = field::<AllocateRequest>(
            r#"{"zone":"z","kind":"fixed","attachment":{"container_id":"c","ifname":"eth0","node":7}}"#,
        );
        assert_eq!(f.as_deref(), Some("attachment.node"), "{m}");
        let (f, _) = field::<AllocateRequest>(
            r#"{"zone":"z","kind":"fixed","bogus":1,"attachment":{"container_id":"c","ifname":"eth0","node":"n"}}"#,
        );
        assert_eq!(f.as_deref(), Some("bogus"));
        let (f, _) = field::<AllocateRequest>(
            r#"{"zone":"z","kind":"sticky","attachment":{"container_id":"c","ifname":"eth0","node":"n"}}"#,
        );
        assert_eq!(f.as_deref(), Some("kind"));
        let (f, _) = field::<AllocateRequest>(
            r#"{"kind":"fixed","attachment":{"container_id":"c","ifname":"eth0","node":"n"}}"#,
        );
        assert_eq!(f.as_deref(), Some("zone"));
        let (f, m) = field::<AllocateRequest>(r#"{"zone":"#);
        assert_eq!(f, None);
        assert!(m.contains("EOF"), "{m}");
        let (f, _) = field::<AllocateRequest>("not json");
        assert_eq!(f, None);
    }

    #[test]
    fn query_errors_name_the_field() {
        let q: LeaseFilter =
            parse_query(Some("zone=z1&kind=fixed&limit=10&retained=true")).unwrap();
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.retained, Some(true));
        let e = parse_query::<LeaseFilter>(Some("limit=ten")).unwrap_err();
        assert_eq!(
            e.error.field.as_deref(),
            Some("limit"),
            "{}",
            e.error.message
        );
        let e = parse_query::<LeaseFilter>(Some("colour=red")).unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some("colour"));
        let e = parse_query::<LeaseFilter>(Some("kind=sticky")).unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some("kind"));
    }
}
