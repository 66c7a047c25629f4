//! The `denwa` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use denwa::config;
use denwa::policy::Rule;
use denwa::records::status::StatusFile;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "denwa", version, about = "SIP call routing for a small shop's phone numbers")]
struct Cli {
    /// Log format for `run`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The config file every subcommand reads.
#[derive(clap::Args)]
struct ConfigArg {
    /// The shop's config file (TOML).
    #[arg(long, default_value = "config/shop.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (SIGHUP reloads the config, SIGINT/SIGTERM stops).
    ///
    /// DENWA_LOG sets the log filter, e.g. "debug" or "info,denwa::sip=debug".
    Run(ConfigArg),
    /// Validate a config and every prompt it names, and show each number's rules.
    Check(ConfigArg),
    /// Show what the running denwa reports: each number's registration.
    ///
    /// Exits with 3 if denwa is not running (or has stopped reporting).
    Status(ConfigArg),
    /// What the policy would do with a call, and why (no call is placed).
    Route {
        /// The shop's config file (TOML).
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
        /// The dialled number or line name.
        number: String,
        /// The caller's number, or "anonymous".
        #[arg(long)]
        from: Option<String>,
        /// When the call arrives, in the shop's time zone ("2026-12-31 21:00"); default now.
        #[arg(long)]
        at: Option<String>,
        /// Assume the line is in this mode (default: the mode file's).
        #[arg(long)]
        mode: Option<String>,
        /// Calls already in progress on this number.
        #[arg(long, default_value_t = 0)]
        active_calls: u32,
        /// Calls already in progress on all the shop's numbers.
        #[arg(long, default_value_t = 0)]
        shop_calls: u32,
        /// Treat this phone as busy (repeatable); others are free.
        #[arg(long)]
        busy: Vec<String>,
        /// Each hour of the coming week instead of one moment.
        #[arg(long)]
        week: bool,
    },
    /// Show or set a line's mode: `denwa mode public busy --for 2h`, `denwa mode public normal`.
    Mode {
        /// The shop's config file (TOML).
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
        /// The line (name or number); without it, every line's mode is shown.
        line: Option<String>,
        /// A mode name from [shop] modes, or "normal".
        mode: Option<String>,
        /// How long the mode lasts ("2h", "30m").
        #[arg(long = "for", conflicts_with = "until")]
        for_: Option<String>,
        /// When the mode ends ("18:00", "2026-12-31 09:00").
        #[arg(long)]
        until: Option<String>,
    },
    /// The call log as a table.
    Calls {
        /// The shop's config file (TOML).
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
        /// Only this line (name or number).
        #[arg(long)]
        number: Option<String>,
        /// From this time ("2026-11-01", "2026-11-01 09:00") or this long ago ("2h").
        #[arg(long)]
        since: Option<String>,
        /// Callers whose number contains this.
        #[arg(long)]
        caller: Option<String>,
        /// The matching JSON lines as stored.
        #[arg(long)]
        json: bool,
    },
    /// Voicemail: list, play, export, mark and delete messages; resend notifications.
    Voicemail {
        /// The shop's config file (TOML); only its voicemail folder, lines and time zone are read.
        #[arg(long, default_value = "config/shop.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: VoicemailCommand,
    },
}

#[derive(Subcommand)]
enum VoicemailCommand {
    /// Messages, newest first (archived ones only with --all).
    List {
        /// Only this line (name or number).
        #[arg(long)]
        number: Option<String>,
        /// Only messages nobody has listened to yet.
        #[arg(long)]
        new: bool,
        /// Include archived messages.
        #[arg(long)]
        all: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One message: caller, time, length, file and its notifications.
    Show {
        /// The message's id (see `denwa voicemail list`).
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Play a message here (with paplay or aplay) and mark it heard; without a player, print its file.
    Play {
        /// The message's id (see `denwa voicemail list`).
        id: String,
    },
    /// Copy a message's recording (WAV) to FILE, or into FILE if it is a folder.
    Export {
        /// The message's id (see `denwa voicemail list`).
        id: String,
        /// Where to write the WAV file.
        file: PathBuf,
    },
    /// Mark a message heard, new or archived.
    Mark {
        /// The message's id (see `denwa voicemail list`).
        id: String,
        /// The new state.
        #[arg(value_enum)]
        state: MarkAs,
    },
    /// Delete a message and its recording.
    Delete {
        /// The message's id (see `denwa voicemail list`).
        id: String,
    },
    /// Queue again the notifications that failed for good (after fixing [notify]).
    RetryNotify,
}

#[derive(Clone, Copy, ValueEnum)]
enum MarkAs {
    /// Listened to.
    Heard,
    /// Not listened to yet.
    New,
    /// Kept, but left out of `list` (unless --all).
    Archived,
}

impl MarkAs {
    fn as_str(self) -> &'static str {
        match self {
            MarkAs::Heard => "heard",
            MarkAs::New => "new",
            MarkAs::Archived => "archived",
        }
    }
}

/// The first audio player on `path_var` (PATH): paplay first, as a sound
/// server usually owns the device on desktops, then aplay.
fn find_player(path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    ["paplay", "aplay"].iter().find_map(|name| {
        std::env::split_paths(path_var).map(|dir| dir.join(name)).find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Runs one `denwa voicemail` subcommand; returns what to print.
fn voicemail(config_path: &std::path::Path, command: VoicemailCommand) -> Result<String, String> {
    use denwa::records::{cli, voicemail::Filter};
    let lookup = config::voicemail::voicemail_of(config_path)?;
    let dir = lookup.dir.as_path();
    if !dir.join(denwa::records::db::DB_FILE).exists() {
        let nothing = format!("no voicemail yet ({} holds no messages)", dir.display());
        return match command {
            VoicemailCommand::List { json: true, .. } => Ok("[]\n".into()),
            VoicemailCommand::List { .. } | VoicemailCommand::RetryNotify => Ok(nothing + "\n"),
            _ => Err(nothing),
        };
    }
    let zone = &lookup.zone;
    let text = match command {
        VoicemailCommand::List { number, new, all, json } => {
            let filter = Filter {
                line: number.map(|n| lookup.line_name(&n).unwrap_or(n)),
                only_new: new,
                include_archived: all,
            };
            cli::list(dir, &filter, zone, json)
        }
        VoicemailCommand::Show { id, json } => cli::show(dir, &id, zone, json),
        VoicemailCommand::Play { id } => {
            let Some(player) = find_player(&std::env::var_os("PATH").unwrap_or_default()) else {
                let store = denwa::records::voicemail::VoicemailStore::open(dir).map_err(|e| e.to_string())?;
                let file = store.file_path(&store.get(&id).map_err(|e| e.to_string())?);
                return Ok(format!(
                    "no audio player (paplay or aplay) here; the recording is {}\n\
                     (then: denwa voicemail mark {id} heard)\n",
                    file.display()
                ));
            };
            let file = cli::play(dir, &id).map_err(|e| e.to_string())?;
            let status = std::process::Command::new(&player)
                .arg(&file)
                .status()
                .map_err(|e| format!("cannot run {}: {e}", player.display()))?;
            if !status.success() {
                return Err(format!("{} {} failed: {status}", player.display(), file.display()));
            }
            return Ok(String::new());
        }
        VoicemailCommand::Export { id, file } => cli::export(dir, &id, &file),
        VoicemailCommand::Mark { id, state } => cli::mark(dir, &id, state.as_str()),
        VoicemailCommand::Delete { id } => cli::delete(dir, &id),
        VoicemailCommand::RetryNotify => {
            let queue = denwa::notify::queue::Queue::open(dir, Default::default())
                .map_err(|e| format!("voicemail database in {}: {e}", dir.display()))?;
            let n = queue
                .retry_failed(jiff::Timestamp::now())
                .map_err(|e| format!("voicemail database in {}: {e}", dir.display()))?;
            return Ok(match n {
                0 => "no failed notifications\n".to_string(),
                n => format!("{n} notification(s) queued again; a running denwa sends them within a minute\n"),
            });
        }
    };
    text.map_err(|e| e.to_string())
}

/// What the status file tells about the engine that wrote it.
#[derive(Debug, PartialEq, Eq)]
enum Liveness {
    Running,
    /// Its process is gone (stopped or crashed).
    Gone,
    /// Its process exists but it stopped writing: hung, or the pid now
    /// belongs to another program.
    Stale,
}

/// Three missed refreshes: the engine is not doing its work.
const MISSED_REFRESHES: u32 = 3;

fn liveness(status: &StatusFile, now: jiff::Timestamp, process_exists: bool) -> Liveness {
    if !process_exists {
        Liveness::Gone
    } else if status.age(now) > status.refresh_every() * MISSED_REFRESHES {
        Liveness::Stale
    } else {
        Liveness::Running
    }
}

/// Whether a process with this id exists (kill with signal 0 only checks).
fn process_exists(pid: u32) -> bool {
    // 0 and negative ids would name process groups, not one process.
    let Some(pid) = libc::pid_t::try_from(pid).ok().filter(|p| *p > 0) else {
        return false;
    };
    // SAFETY: signal 0 is never delivered; kill only reports whether it could be.
    let result = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists, under another user.
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `denwa status` exits with this when denwa is not running (as LSB init scripts do).
const NOT_RUNNING: u8 = 3;

fn status(path: &std::path::Path) -> ExitCode {
    let file = match config::status_file_of(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let file = &file;
    let status: StatusFile = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "no status at {} ({e}): is denwa running with this config?",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let now = jiff::Timestamp::now();
    let age = status.age(now).as_secs();
    match liveness(&status, now, process_exists(status.pid)) {
        Liveness::Running => {}
        Liveness::Gone => {
            println!(
                "denwa is not running: pid {} that wrote {} is gone (its last report is {age} s old)",
                status.pid,
                file.display()
            );
            return ExitCode::from(NOT_RUNNING);
        }
        Liveness::Stale => {
            println!(
                "denwa is not running properly: pid {} last reported {age} s ago, but it reports every {} s \
(it may hang, or that pid now belongs to another program)",
                status.pid,
                status.refresh_every().as_secs()
            );
            return ExitCode::from(NOT_RUNNING);
        }
    }
    println!(
        "denwa pid {} on {}: {} call(s) in progress; reported {age} s ago",
        status.pid, status.listen, status.active_calls,
    );
    let m = |k: &str| status.media.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    println!(
        "RTP: {} packets sent, {} send errors, {} pacing slips, {} callers behind NAT",
        m("rtp_packets_sent"),
        m("rtp_send_errors"),
        m("pacing_slips"),
        m("peers_learned")
    );
    if !status.phones.is_empty() {
        println!("staff phones:");
    }
    for p in &status.phones {
        let text = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let rtt = p
            .get("rtt_ms")
            .and_then(|v| v.as_u64())
            .map(|ms| format!(", {ms} ms away"))
            .unwrap_or_default();
        println!(
            "  {:<10} {} at {} ({}{rtt}), expires in {} s",
            text("phone"),
            text("contact"),
            text("target"),
            p.get("reachability")
                .map(|r| r.to_string().trim_matches('"').to_string())
                .unwrap_or_default(),
            p.get("expires_in_s").and_then(|v| v.as_u64()).unwrap_or(0)
        );
    }
    if status.registrations.is_empty() {
        println!("no numbers register with a provider");
    }
    for r in &status.registrations {
        let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let secs = |k: &str| r.get(k).and_then(|v| v.as_u64());
        let mut line = format!(
            "{:<10} {:<12} {:<12} since {}",
            text("line"),
            text("user"),
            text("state"),
            text("since")
        );
        if let Some(s) = secs("expires_in_s") {
            line.push_str(&format!(", expires in {s} s"));
        }
        if let Some(s) = secs("next_attempt_in_s") {
            line.push_str(&format!(", next REGISTER in {s} s"));
        }
        if r.get("last_error").is_some_and(|e| !e.is_null()) {
            line.push_str(&format!(", last error: {}", text("last_error")));
        }
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// Mistakes tracing's parser accepts but that leave the owner without logs:
/// "xyz=" (read as "xyz=trace") and a misspelt level like "debgu" (read as
/// a module name, so nothing else is logged).
fn log_directive_mistake(directive: &str) -> Option<String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let d = directive.trim();
    if d.ends_with('=') {
        return Some(format!("{d:?} has no level after \"=\""));
    }
    let bare = !d.contains(['=', '[', '{']);
    if bare && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) && !d.starts_with("denwa") {
        return Some(format!("{d:?} is not a level ({})", LEVELS.join(", ")));
    }
    None
}

/// The log filter from DENWA_LOG (default "info"), and what was wrong with
/// it if it could not be used.
fn log_filter(value: Option<std::ffi::OsString>) -> (EnvFilter, Option<String>) {
    const DEFAULT: &str = "info";
    let Some(value) = value else {
        return (EnvFilter::new(DEFAULT), None);
    };
    let Some(text) = value.to_str() else {
        return (
            EnvFilter::new(DEFAULT),
            Some(format!("DENWA_LOG={value:?}: not UTF-8; using {DEFAULT:?}")),
        );
    };
    let mistake = text
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .find_map(log_directive_mistake);
    let problem = match mistake {
        Some(m) => m,
        None => match EnvFilter::try_new(text) {
            Ok(filter) => return (filter, None),
            Err(e) => e.to_string(),
        },
    };
    (
        EnvFilter::new(DEFAULT),
        Some(format!("DENWA_LOG={text:?}: {problem}; using {DEFAULT:?}")),
    )
}

fn init_logging(format: LogFormat) {
    let (filter, problem) = log_filter(std::env::var_os("DENWA_LOG"));
    // Colour only for a person at a terminal; files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// One line per rule, with its conditions, so no two rules look alike:
/// `rule 1: mon-fri 10:00-17:00 → ring 2 s, then announce closed.wav (6.8 s)`.
fn describe_rule(number: usize, rule: &Rule) -> String {
    let when = if rule.when.is_always() {
        "any time".to_string()
    } else {
        rule.when.to_string()
    };
    format!("rule {number}: {when} → {}", rule.plan.describe())
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            println!(
                "ok: {}: {}, {} numbers",
                path.display(),
                c.policy.shop_name,
                c.policy.numbers.len()
            );
            for n in c.policy.numbers.values() {
                println!(
                    "  {} ({}, \"{}\"): {} rule(s)",
                    n.name,
                    n.number,
                    n.label,
                    n.rules.len()
                );
                for (i, rule) in n.rules.iter().enumerate() {
                    println!("    {}", describe_rule(i + 1, rule));
                }
            }
            for w in &c.warnings {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), path.display());
            ExitCode::FAILURE
        }
    }
}

/// `denwa check | head` should end quietly, as other command-line tools do,
/// not panic on a closed stdout. (Only for the reporting commands: the
/// engine must never die of SIGPIPE.)
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal, before any threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(ConfigArg { config }) => {
            quiet_on_closed_pipe();
            check(&config)
        }
        Command::Status(ConfigArg { config }) => {
            quiet_on_closed_pipe();
            status(&config)
        }
        Command::Route {
            config,
            number,
            from,
            at,
            mode,
            active_calls,
            shop_calls,
            busy,
            week,
        } => {
            quiet_on_closed_pipe();
            denwa::cli::route(denwa::cli::RouteArgs {
                config,
                number,
                from,
                at,
                mode,
                active_calls,
                shop_calls,
                busy,
                week,
            })
        }
        Command::Mode {
            config,
            line,
            mode,
            for_,
            until,
        } => denwa::cli::mode(denwa::cli::ModeArgs {
            config,
            line,
            mode,
            for_,
            until,
        }),
        Command::Calls {
            config,
            number,
            since,
            caller,
            json,
        } => {
            quiet_on_closed_pipe();
            denwa::cli::calls(denwa::cli::CallsArgs {
                config,
                number,
                since,
                caller,
                json,
            })
        }
        Command::Voicemail { config, command } => {
            quiet_on_closed_pipe();
            match voicemail(&config, command) {
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
        Command::Run(ConfigArg { config: path }) => {
            init_logging(cli.log_format);
            let config = match config::load(&path) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        tracing::error!("{e}");
                    }
                    tracing::error!(
                        "not starting: fix the config and run `denwa check --config {}`",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let result = runtime
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(denwa::server::run(config)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use denwa::policy::{Action, DaySet, HourRange, Hours, Plan, PromptRef, When};
    use std::time::Duration;

    fn status_written_at(updated_at: jiff::Timestamp) -> StatusFile {
        serde_json::from_value(serde_json::json!({
            "updated_at": updated_at,
            "pid": 4242,
            "listen": "127.0.0.1:5060",
            "active_calls": 0,
            "media": {"rtp_packets_sent": 0, "rtp_send_errors": 0, "pacing_slips": 0, "peers_learned": 0},
            "registrations": [],
        }))
        .unwrap()
    }

    #[test]
    fn status_is_stale_after_three_missed_refreshes_and_gone_without_its_process() {
        let written: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let status = status_written_at(written);
        // Files from before the interval was written in: every 5 s.
        assert_eq!(status.refresh_every(), Duration::from_secs(5));
        let at = |secs: i64| written + jiff::SignedDuration::from_secs(secs);
        assert_eq!(liveness(&status, at(4), true), Liveness::Running);
        assert_eq!(liveness(&status, at(15), true), Liveness::Running);
        assert_eq!(liveness(&status, at(16), true), Liveness::Stale);
        assert_eq!(liveness(&status, at(2), false), Liveness::Gone);
        // A clock that went backwards is not staleness.
        assert_eq!(liveness(&status, at(-60), true), Liveness::Running);
    }

    #[test]
    fn a_process_that_exited_does_not_exist() {
        assert!(process_exists(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_exists(pid));
        assert!(!process_exists(0), "0 is a process group, not a process");
        assert!(!process_exists(u32::MAX));
    }

    fn announce(days: Option<&str>, hours: Option<&str>, answer_after_ms: u64, repeat: u32) -> Rule {
        Rule {
            when: When {
                days: days.map(|d| DaySet::parse(d).unwrap()),
                hours: hours.map(|h| Hours(vec![HourRange::parse(h).unwrap()])),
                ..When::default()
            },
            plan: Plan::single(Action::Announce {
                prompt: PromptRef {
                    name: "closed.wav".into(),
                    duration: Duration::from_millis(6800),
                },
                repeat,
                answer_after: Duration::from_millis(answer_after_ms),
            }),
        }
    }

    #[test]
    fn check_shows_each_rule_with_its_conditions() {
        assert_eq!(
            describe_rule(1, &announce(Some("mon-fri"), Some("10:00-17:00"), 2000, 1)),
            "rule 1: mon-fri 10:00-17:00 → ring 2 s, then announce closed.wav (6.8 s)"
        );
        assert_eq!(
            describe_rule(2, &announce(Some("sat,sun"), None, 0, 2)),
            "rule 2: sat,sun → announce closed.wav (6.8 s) x2"
        );
        assert_eq!(
            describe_rule(3, &announce(None, Some("22:00-06:00"), 1500, 1)),
            "rule 3: 22:00-06:00 → ring 1.5 s, then announce closed.wav (6.8 s)"
        );
        assert_eq!(
            describe_rule(4, &announce(None, None, 0, 1)),
            "rule 4: any time → announce closed.wav (6.8 s)"
        );
    }

    #[test]
    fn every_flag_and_subcommand_has_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        let mut visit = vec![cli];
        while let Some(cmd) = visit.pop() {
            if cmd.get_about().is_none() && cmd.get_name() != "denwa" {
                missing.push(format!("subcommand {}", cmd.get_name()));
            }
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() {
                    missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
                // A plain on/off flag's implicit true/false need no words of their own.
                let switch = matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::SetFalse);
                for value in arg.get_possible_values().into_iter().filter(|_| !switch) {
                    if value.get_help().is_none() {
                        missing.push(format!("{} --{} {}", cmd.get_name(), arg.get_id(), value.get_name()));
                    }
                }
            }
            visit.extend(cmd.get_subcommands().cloned());
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    /// A fresh directory for one test, removed when the test is done with it.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("denwa-main-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    #[test]
    fn voicemail_commands_round_trip_on_a_store() {
        use denwa::records::voicemail::{Message, MessageState, VoicemailStore};
        let dir = temp_dir("vm-cli");
        let config = dir.join("shop.toml");
        // A password variable that is not set: the voicemail commands never need it.
        std::fs::write(
            &config,
            "[shop]\ntimezone = \"Asia/Tokyo\"\n[voicemail]\ndir = \"vm\"\n\
             [notify.smtp]\npassword_env = \"DENWA_TEST_SURELY_UNSET\"\n\
             [numbers.public]\nnumber = \"0501110001\"\n[numbers.delivery]\nnumber = \"0501110002\"\n",
        )
        .unwrap();
        let run = |command| voicemail(&config, command);
        let list = |number: Option<&str>, new: bool| {
            run(VoicemailCommand::List {
                number: number.map(String::from),
                new,
                all: false,
                json: false,
            })
            .unwrap()
        };
        assert!(
            list(None, false).starts_with("no voicemail yet"),
            "before the first message"
        );

        let store = VoicemailStore::open(&dir.join("vm")).unwrap();
        let message = Message {
            id: "vm-1".into(),
            line: "public".into(),
            caller: "09011112222".into(),
            caller_name: None,
            received_at: "2026-03-01T05:07:00Z".parse().unwrap(),
            duration_ms: 4000,
            file: "vm-1.wav".into(),
            size_bytes: 8,
            state: MessageState::New,
            recovered: false,
            call_id: None,
        };
        std::fs::write(store.file_path(&message), b"RIFF....").unwrap();
        store.insert(&message).unwrap();

        let table = list(None, false);
        assert!(table.contains("vm-1") && table.contains("2026-03-01 14:07"), "{table}");
        assert!(list(Some("0501110001"), false).contains("vm-1"), "a line by its number");
        assert!(list(Some("public"), true).contains("vm-1"));
        assert_eq!(list(Some("delivery"), false), "no voicemail\n");

        let marked = run(VoicemailCommand::Mark {
            id: "vm-1".into(),
            state: MarkAs::Heard,
        })
        .unwrap();
        assert_eq!(marked, "vm-1 is now heard\n");
        assert_eq!(list(None, true), "no voicemail\n", "--new leaves heard ones out");
        let shown: serde_json::Value = serde_json::from_str(
            &run(VoicemailCommand::Show {
                id: "vm-1".into(),
                json: true,
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(shown["state"], "heard");

        let copy = dir.join("copy.wav");
        run(VoicemailCommand::Export {
            id: "vm-1".into(),
            file: copy.clone(),
        })
        .unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"RIFF....");
        assert_eq!(run(VoicemailCommand::RetryNotify).unwrap(), "no failed notifications\n");

        assert_eq!(
            run(VoicemailCommand::Delete { id: "vm-1".into() }).unwrap(),
            "deleted vm-1\n"
        );
        let gone = run(VoicemailCommand::Show {
            id: "vm-1".into(),
            json: false,
        })
        .unwrap_err();
        assert!(gone.contains("no voicemail with id vm-1"), "{gone}");
        assert!(!dir.join("vm/vm-1.wav").exists());
    }

    #[test]
    fn the_player_is_found_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let empty = temp_dir("player-none");
        let with = temp_dir("player-aplay");
        let aplay = with.join("aplay");
        std::fs::write(&aplay, "#!/bin/sh\n").unwrap();
        std::fs::write(empty.join("paplay"), "not executable").unwrap();
        std::fs::set_permissions(&aplay, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&*empty, &*with]).unwrap();
        assert_eq!(find_player(&path), Some(aplay));
        assert_eq!(find_player(empty.as_os_str()), None);
    }

    #[test]
    fn a_bad_log_filter_is_reported_and_info_used() {
        for (value, reason) in [
            ("xyz=", "\"xyz=\" has no level after \"=\""),
            (
                "info,debgu",
                "\"debgu\" is not a level (trace, debug, info, warn, error, off)",
            ),
        ] {
            let (_, problem) = log_filter(Some(value.into()));
            assert_eq!(
                problem.unwrap(),
                format!("DENWA_LOG={value:?}: {reason}; using \"info\"")
            );
        }
        // tracing's own parse errors, e.g. an unknown level.
        let (_, problem) = log_filter(Some("denwa=loud".into()));
        let problem = problem.expect("reported");
        assert!(
            problem.starts_with("DENWA_LOG=\"denwa=loud\": ") && problem.ends_with("; using \"info\""),
            "{problem}"
        );
        for good in ["debug", "INFO,denwa::sip=trace", "warn,tokio=debug", "denwa"] {
            assert!(log_filter(Some(good.into())).1.is_none(), "{good}");
        }
        assert!(log_filter(None).1.is_none());
    }
}
