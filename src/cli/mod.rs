//! Commands that read the config and the records without running the
//! engine: `route` (dry run of the policy), `mode` (set a line's mode) and
//! `calls` (the call log as a table).

mod calls;
mod mode;
mod route;

use std::path::Path;
use std::process::ExitCode;

pub use calls::{CallsArgs, calls};
pub use mode::{ModeArgs, mode};
pub use route::{RouteArgs, route};

use crate::config::{self, Config};

fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load_without_secrets(path).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("error: {e}");
        }
        eprintln!("fix the config first: denwa check --config {}", path.display());
        ExitCode::FAILURE
    })
}

/// "21:00", "2026-12-31 21:00" or an RFC 3339 instant, in the shop's zone.
/// A bare time is today's; with `future`, the next such time.
fn parse_local(
    text: &str,
    zone: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
    future: bool,
) -> Result<jiff::Timestamp, String> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let today = now.to_zoned(zone.clone());
    // jiff reads a time out of a full date-time too, so only a text
    // without a date is a bare time.
    let civil = if let Ok(dt) = t.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>() {
        dt
    } else if let Ok(d) = t.parse::<jiff::civil::Date>() {
        d.to_datetime(jiff::civil::Time::midnight())
    } else if let Some(time) = t.parse::<jiff::civil::Time>().ok().filter(|_| !t.contains('-')) {
        let mut dt = today.date().to_datetime(time);
        if future && dt <= today.datetime() {
            dt = dt.checked_add(jiff::Span::new().days(1)).map_err(|e| e.to_string())?;
        }
        dt
    } else {
        return Err(format!("{text:?} is not a time like \"21:00\" or \"2026-12-31 21:00\""));
    };
    zone.to_ambiguous_timestamp(civil)
        .compatible()
        .map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times() {
        let zone = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
        let now: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().unwrap(); // 19:00 JST
        let at = |t: &str, future: bool| parse_local(t, &zone, now, future).unwrap().to_string();
        assert_eq!(at("2026-12-31 21:00", false), "2026-12-31T12:00:00Z");
        assert_eq!(at("2026-12-31", false), "2026-12-30T15:00:00Z");
        assert_eq!(at("21:00", true), "2026-11-24T12:00:00Z");
        assert_eq!(at("18:00", true), "2026-11-25T09:00:00Z");
        assert_eq!(at("18:00", false), "2026-11-24T09:00:00Z");
        assert!(parse_local("tomorrow", &zone, now, false).is_err());
    }
}
