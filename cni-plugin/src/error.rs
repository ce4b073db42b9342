//! CNI errors: `{"cniVersion","code","msg","details"}` on STDOUT with a non-zero exit, because
//! libcni reads the error from stdout (stderr is only logs). Codes 0-99 are the spec's; 100+
//! are ours.

use serde::Serialize;

pub const INCOMPATIBLE_VERSION: u32 = 1;
pub const UNSUPPORTED_FIELD: u32 = 2;
pub const UNKNOWN_CONTAINER: u32 = 3;
pub const INVALID_ENV: u32 = 4;
pub const IO_FAILURE: u32 = 5;
pub const DECODE_FAILURE: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;
pub const TRY_AGAIN: u32 = 11;
pub const NOT_AVAILABLE: u32 = 50;
/// NetHouse refused: the zone has no free address.
pub const ZONE_EXHAUSTED: u32 = 100;
/// NetHouse refused: the pod's fixed IP lives in another zone than this node's.
pub const WRONG_ZONE: u32 = 101;
/// NetHouse refused the request for another reason (the message says which).
pub const REJECTED: u32 = 102;
/// CHECK: NetHouse no longer holds this attachment with the address of `prevResult`.
pub const LEASE_MISMATCH: u32 = 110;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }

    /// The JSON the runtime reads, in the version the config asked for.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            #[serde(flatten)]
            err: &'a CniError,
        }
        serde_json::to_string(&Wire {
            cni_version,
            err: self,
        })
        .unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{cni_version}","code":{},"msg":"error"}}"#,
                self.code
            )
        })
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// Maps a NetHouse client error to the code the runtime should act on: transient failures are
/// 11 (the runtime retries the sandbox), refusals are ours.
pub fn from_client(what: &str, e: &nethouse_api::ClientError) -> CniError {
    use nethouse_api::codes;
    if e.is_transient() {
        return CniError::new(
            TRY_AGAIN,
            format!("{what}: NetHouse not available, try again later"),
        )
        .details(e.to_string());
    }
    let code = match e.api_code() {
        Some(codes::ZONE_EXHAUSTED) => ZONE_EXHAUSTED,
        Some(codes::WRONG_ZONE) => WRONG_ZONE,
        _ => REJECTED,
    };
    CniError::new(code, format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = CniError::new(INVALID_ENV, "CNI_IFNAME is missing");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":4,"msg":"CNI_IFNAME is missing"}"#
        );
        let e = e.details("x");
        assert!(e.to_json("1.1.0").ends_with(r#""details":"x"}"#));
    }
}
