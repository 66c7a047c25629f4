//! `denwa route`: what the policy would do with a call, and why, without
//! placing one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, mode_file};
use crate::policy::week::week;
use crate::policy::{CallFacts, CallerHeaders, Modes, PhoneState};

pub struct RouteArgs {
    pub config: PathBuf,
    /// The dialled number or line name.
    pub number: String,
    /// The caller's number, or "anonymous".
    pub from: Option<String>,
    pub at: Option<String>,
    pub mode: Option<String>,
    pub active_calls: u32,
    pub shop_calls: u32,
    /// Phones to treat as busy (all others as free).
    pub busy: Vec<String>,
    pub week: bool,
}

pub fn route(args: RouteArgs) -> ExitCode {
    let config = match super::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(&config, &args) {
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

fn run(config: &Config, args: &RouteArgs) -> Result<String, String> {
    let policy = &config.policy;
    let line = policy.line_for(&args.number).ok_or_else(|| {
        format!(
            "no number {:?}: use a line name or number ({})",
            args.number,
            policy.numbers.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let now = jiff::Timestamp::now();
    let at = match &args.at {
        Some(t) => super::parse_local(t, &policy.timezone, now, false)?,
        None => now,
    };
    let modes = match &args.mode {
        Some(m) => {
            let mut modes = Modes::default();
            modes.set(&line.name, m, None, now);
            modes
        }
        None => mode_file::read(&config.settings.mode_file)?,
    };
    let phones: BTreeMap<String, PhoneState> = config
        .settings
        .phones
        .names()
        .into_iter()
        .map(|p| {
            let state = if args.busy.contains(&p) {
                PhoneState::Busy
            } else {
                PhoneState::Free
            };
            (p, state)
        })
        .collect();
    if let Some(unknown) = args.busy.iter().find(|b| !phones.contains_key(*b)) {
        return Err(format!("--busy {unknown}: no such phone"));
    }
    let from = args.from.clone().unwrap_or_else(|| "anonymous".into());
    let caller = policy.caller_of(&CallerHeaders {
        from: &from,
        asserted: None,
        privacy: None,
    });
    let facts = CallFacts {
        caller: caller.clone(),
        active_calls: args.active_calls,
        shop_calls: args.shop_calls,
        phones: &phones,
        modes: &modes,
        ..CallFacts::new(&line.name, at)
    };
    let mut out = String::new();
    if args.week {
        let days = week(policy, &facts).ok_or("no such number")?;
        out.push_str(&format!(
            "{} ({}), caller {caller}, the week from {}:\n",
            line.name, line.number, days[0].date
        ));
        for day in days {
            let mut head = format!("{}", day.date.strftime("%a %m-%d"));
            if let Some(h) = day.holiday {
                head.push_str(&format!(" [holiday: {h}]"));
            }
            if let Some(c) = &day.closed {
                head.push_str(&format!(" [{c}]"));
            }
            out.push_str(&head);
            out.push('\n');
            for span in &day.spans {
                let rule = span.rule.map_or("  -".to_string(), |r| format!("r{r:<2}"));
                out.push_str(&format!(
                    "    {:02}-{:02}  {rule} {}\n",
                    span.from, span.to, span.outcome
                ));
            }
        }
        return Ok(out);
    }
    let (explanation, rule) = policy.explain(&facts).ok_or("no such number")?;
    out.push_str(&format!(
        "{} ({}) at {}, caller {caller}\n",
        line.name,
        line.number,
        explanation.local.strftime("%a %Y-%m-%d %H:%M %Z")
    ));
    if let Some(mode) = modes.current(&line.name, at) {
        out.push_str(&format!("  mode: {mode}\n"));
    }
    match rule {
        Some(rule) => {
            out.push_str(&format!("  plan: {}\n", rule.plan.describe()));
            out.push_str(&format!(
                "  staff see: {}\n",
                rule.plan.label.as_deref().unwrap_or(&line.label)
            ));
        }
        None => out.push_str("  plan: none: the call is refused (480)\n"),
    }
    if let Some((n, conditions)) = &explanation.matched {
        out.push_str(&format!("  why: rule {n} ({conditions}) matched\n"));
    }
    for s in &explanation.skipped {
        out.push_str(&format!(
            "       rule {} ({}) not: {}\n",
            s.rule, s.conditions, s.reason
        ));
    }
    Ok(out)
}
