//! `denwa calls`: the call log (JSON lines) as a readable table.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Deserialize;

pub struct CallsArgs {
    pub config: PathBuf,
    /// A line name or number.
    pub number: Option<String>,
    /// "2026-11-01", "2026-11-01 09:00", or a duration back from now ("2h").
    pub since: Option<String>,
    /// Part of the caller's number.
    pub caller: Option<String>,
    pub json: bool,
}

/// The fields of a call record the table shows (see `call::CallRecord`).
#[derive(Debug, Deserialize)]
struct Row {
    time: jiff::Timestamp,
    #[serde(default)]
    line: String,
    #[serde(default)]
    dialled: String,
    #[serde(default)]
    caller: String,
    #[serde(default)]
    caller_name: Option<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    answered_at: Option<jiff::Timestamp>,
    #[serde(default)]
    ended_at: Option<jiff::Timestamp>,
    #[serde(default)]
    final_status: u16,
    #[serde(default)]
    why: String,
}

pub fn calls(args: CallsArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &CallsArgs) -> Result<(), String> {
    let config = super::load(&args.config).map_err(|_| "the config has errors".to_string())?;
    let zone = &config.policy.timezone;
    let now = jiff::Timestamp::now();
    let since = match &args.since {
        None => None,
        Some(s) => Some(match crate::config::parse_duration(s) {
            Ok(d) => now.checked_sub(d).map_err(|e| e.to_string())?,
            Err(_) => super::parse_local(s, zone, now, false).map_err(|e| format!("--since: {e}"))?,
        }),
    };
    let line = match &args.number {
        Some(n) => Some(
            config
                .policy
                .line_for(n)
                .map(|l| l.name.clone())
                .ok_or_else(|| format!("no line {n:?}"))?,
        ),
        None => None,
    };
    let path = &config.settings.call_log;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no calls yet ({} does not exist)", path.display());
            return Ok(());
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut shown = 0;
    for (i, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.map_err(|e| format!("{}: {e}", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let row: Row = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}:{}: skipped: {e}", path.display(), i + 1);
                continue;
            }
        };
        if since.is_some_and(|s| row.time < s)
            || line.as_ref().is_some_and(|l| *l != row.line)
            || args.caller.as_ref().is_some_and(|c| !row.caller.contains(c.as_str()))
        {
            continue;
        }
        shown += 1;
        if args.json {
            println!("{text}");
            continue;
        }
        if shown == 1 {
            println!(
                "{:<16} {:<10} {:<16} {:<22} {:>6} {:>6}  why",
                "time", "line", "caller", "action", "status", "length"
            );
        }
        let length = match (row.answered_at, row.ended_at) {
            (Some(a), Some(e)) => format!("{}s", e.duration_since(a).as_secs()),
            _ => "-".into(),
        };
        let caller = match &row.caller_name {
            Some(name) if !name.is_empty() => format!("{} {name}", row.caller),
            _ => row.caller.clone(),
        };
        let line_name = if row.line.is_empty() { &row.dialled } else { &row.line };
        println!(
            "{:<16} {:<10} {:<16} {:<22} {:>6} {:>6}  {}",
            row.time.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M"),
            line_name,
            truncate(&caller, 16),
            truncate(&row.action, 22),
            row.final_status,
            length,
            row.why
        );
    }
    if shown == 0 && !args.json {
        println!("no calls match");
    }
    Ok(())
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}
