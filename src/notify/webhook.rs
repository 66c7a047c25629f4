//! Webhook: an HTTP(S) POST of the message as JSON (ureq, rustls). Any 2xx
//! is success; everything else is retried.

use std::time::Duration;

use serde_json::json;

use super::{Attempt, Notice};

/// The JSON body a webhook receives.
pub fn payload(notice: &Notice) -> serde_json::Value {
    let m = &notice.message;
    json!({
        "event": "voicemail",
        "id": m.id,
        "line": m.line,
        "caller": m.caller,
        "caller_name": m.caller_name,
        "time": m.received_at.to_string(),
        "local_time": notice.local_time,
        "duration_ms": m.duration_ms,
        "recovered": m.recovered,
        "path": notice.file,
        "url": notice.download_url,
    })
}

pub fn deliver(notice: &Notice, url: &str, timeout: Duration) -> Attempt {
    post_json(&payload(notice), url, timeout)
}

/// POSTs `body` to `url`; any 2xx is delivered.
pub fn post_json(body: &serde_json::Value, url: &str, timeout: Duration) -> Attempt {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let body = body.to_string();
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
    {
        Ok(_) => Attempt::Delivered,
        Err(e) => Attempt::Failed(format!("webhook {}: {e}", redact_url(url))),
    }
}

/// The URL without user info or query (they may hold tokens), for logs.
pub fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_string(),
    }
}
