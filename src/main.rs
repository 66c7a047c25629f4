//! The `denwa` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use denwa::config;

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
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (SIGHUP reloads the config, SIGINT/SIGTERM stops).
    Run {
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
    },
    /// Validate a config and every prompt it names.
    Check {
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
    },
    /// What the policy would do with a call, and why (no call is placed).
    Route {
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
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
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
    /// Show what the running denwa reports: each number's registration.
    Status {
        #[arg(long, default_value = "config/shop.toml")]
        config: PathBuf,
    },
}

fn status(path: &std::path::Path) -> ExitCode {
    let file = match config::status_file_of(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let file = &file;
    let status: denwa::server::StatusFile = match std::fs::read(file)
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
    let age = jiff::Timestamp::now().duration_since(status.updated_at).as_secs();
    println!(
        "denwa pid {} on {}: {} call(s) in progress; reported {age} s ago{}",
        status.pid,
        status.listen,
        status.active_calls,
        if age > 30 {
            " (STALE: denwa may have stopped)"
        } else {
            ""
        }
    );
    let m = status.media;
    println!(
        "RTP: {} packets sent, {} send errors, {} pacing slips, {} callers behind NAT",
        m.rtp_packets_sent, m.rtp_send_errors, m.pacing_slips, m.peers_learned
    );
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DENWA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
                let actions: Vec<String> = n.rules.iter().map(|r| r.plan.describe()).collect();
                println!(
                    "  {} ({}, \"{}\"): {} rule(s): {}",
                    n.name,
                    n.number,
                    n.label,
                    n.rules.len(),
                    actions.join("; ")
                );
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
        Command::Check { config } => {
            quiet_on_closed_pipe();
            check(&config)
        }
        Command::Status { config } => {
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
        Command::Run { config: path } => {
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
