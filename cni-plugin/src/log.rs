//! One JSON line per call, to `ipam.logFile` or stderr — never stdout, which belongs to the
//! runtime.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::error::CniError;

#[derive(Default)]
pub struct Context {
    pub command: &'static str,
    pub container_id: String,
    pub ifname: String,
    pub pod: String,
}

pub fn record(
    file: Option<&std::path::Path>,
    ctx: &Context,
    took: Duration,
    result: &Result<Option<serde_json::Value>, CniError>,
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut line = json!({
        "ts_ms": now_ms,
        "command": ctx.command,
        "container_id": ctx.container_id,
        "ifname": ctx.ifname,
        "pod": ctx.pod,
        "ms": took.as_secs_f64() * 1000.0,
    });
    match result {
        Ok(Some(v)) => {
            line["result"] = json!("ok");
            if let Some(ips) = v.get("ips") {
                line["ips"] = ips.clone();
            }
        }
        Ok(None) => line["result"] = json!("ok"),
        Err(e) => {
            line["result"] = json!("error");
            line["code"] = json!(e.code);
            line["msg"] = json!(e.msg);
            // What NetHouse answered, e.g. whether it counted a refused ADD.
            if !e.details.is_empty() {
                line["details"] = json!(e.details);
            }
        }
    }
    let text = format!("{line}\n");
    let written = file.is_some_and(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .is_ok()
    });
    if !written {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}
