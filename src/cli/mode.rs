//! `denwa mode`: show or set each line's mode (e.g. "busy"), persisted in
//! the mode file the running engine re-reads.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{mode_file, parse_duration};

pub struct ModeArgs {
    pub config: PathBuf,
    pub line: Option<String>,
    /// A mode name, or "normal" to clear.
    pub mode: Option<String>,
    /// How long it lasts ("2h").
    pub for_: Option<String>,
    /// When it ends ("18:00", "2026-12-31 09:00").
    pub until: Option<String>,
}

pub fn mode(args: ModeArgs) -> ExitCode {
    match run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ModeArgs) -> Result<String, String> {
    let config = super::load(&args.config).map_err(|_| "the config has errors".to_string())?;
    let policy = &config.policy;
    let path = &config.settings.mode_file;
    let mut modes = mode_file::read(path)?;
    let now = jiff::Timestamp::now();
    let zone = &policy.timezone;
    let show = |line: &str, modes: &crate::policy::Modes| -> String {
        match modes.0.get(line).filter(|_| modes.current(line, now).is_some()) {
            Some(m) => match m.until {
                Some(until) => format!(
                    "{line}: {} until {}\n",
                    m.mode,
                    until.to_zoned(zone.clone()).strftime("%a %Y-%m-%d %H:%M %Z")
                ),
                None => format!("{line}: {} (until changed)\n", m.mode),
            },
            None => format!("{line}: normal\n"),
        }
    };
    let Some(line_arg) = &args.line else {
        return Ok(policy.numbers.keys().map(|l| show(l, &modes)).collect());
    };
    let line = policy.line_for(line_arg).ok_or_else(|| {
        format!(
            "no line {line_arg:?} ({})",
            policy.numbers.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let Some(mode) = &args.mode else {
        return Ok(show(&line.name, &modes));
    };
    let tested: Vec<&str> = line.rules.iter().filter_map(|r| r.when.mode.as_deref()).collect();
    if mode != "normal" && !tested.contains(&mode.as_str()) {
        let known = if tested.is_empty() {
            format!("no rule of {} tests a mode", line.name)
        } else {
            format!("its rules test: {}", tested.join(", "))
        };
        return Err(format!(
            "mode {mode:?} would change nothing on {} ({known}); add a rule with when = {{ mode = {mode:?} }} first",
            line.name
        ));
    }
    let until = match (&args.for_, &args.until) {
        (Some(_), Some(_)) => return Err("give --for or --until, not both".into()),
        (Some(d), None) => {
            let d = parse_duration(d).map_err(|e| format!("--for: {e}"))?;
            Some(now.checked_add(d).map_err(|e| e.to_string())?)
        }
        (None, Some(t)) => Some(super::parse_local(t, zone, now, true).map_err(|e| format!("--until: {e}"))?),
        (None, None) => None,
    };
    if until.is_some_and(|u| u <= now) {
        return Err("--until is in the past".into());
    }
    modes.set(&line.name, mode, until, now);
    modes.prune(now);
    mode_file::write(path, &modes)?;
    Ok(format!("{}(written to {})\n", show(&line.name, &modes), path.display()))
}
