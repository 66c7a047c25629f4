//! Reloading the config without stalling SIP: the files are read, the WAVs
//! decoded and the registrars resolved on tokio's blocking pool; the loop
//! only swaps the finished result in, all at once (policy, prompts, trusted
//! sources, registrations). Calls in progress keep the plan they started with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::watch::Targets;
use crate::config::{self, Config, ConfigErrors, Settings};
use crate::engine::{Engine, Now};
use crate::sip::register::RegistrationConfig;

/// One finished load: the config (or why not) and the files it depends on.
pub struct Loaded {
    pub config: Result<Config, ConfigErrors>,
    pub targets: Targets,
}

/// Whether a finished load may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing was asked for while it ran: apply it.
    Current,
    /// A reload was asked for while it ran (the files changed again): drop
    /// it, a new load has been started.
    Superseded,
}

/// At most one load at a time; a request while one runs is remembered and
/// served by one more load when it ends. So results arrive in the order the
/// loads started, and only the newest is ever applied: an older config can
/// never replace a newer one.
#[derive(Debug, Default)]
struct LoadGate {
    running: bool,
    again: bool,
}

impl LoadGate {
    /// A reload is asked for: true if a load should start now.
    fn request(&mut self) -> bool {
        if self.running {
            self.again = true;
            false
        } else {
            self.running = true;
            true
        }
    }

    /// The running load ended. If superseded, the next load counts as started.
    fn finished(&mut self) -> Outcome {
        if std::mem::take(&mut self.again) {
            Outcome::Superseded
        } else {
            self.running = false;
            Outcome::Current
        }
    }
}

/// Runs [`config::load`] off the loop and hands back the newest result.
pub struct Reloader {
    path: PathBuf,
    gate: LoadGate,
    /// For a config that does not load: keep watching the running mode file.
    mode_file: PathBuf,
    tx: mpsc::UnboundedSender<Loaded>,
    rx: mpsc::UnboundedReceiver<Loaded>,
}

impl Reloader {
    pub fn new(path: PathBuf, mode_file: PathBuf) -> Reloader {
        let (tx, rx) = mpsc::unbounded_channel();
        Reloader {
            path,
            gate: LoadGate::default(),
            mode_file,
            tx,
            rx,
        }
    }

    /// Load the config again (soon, if a load is running now).
    pub fn request(&mut self) {
        if self.gate.request() {
            self.spawn();
        }
    }

    fn spawn(&self) {
        let (path, mode_file, tx) = (self.path.clone(), self.mode_file.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(load(&path, &mode_file));
        });
    }

    /// The next load to apply (cancel-safe). Pending forever while none runs.
    pub async fn next(&mut self) -> Loaded {
        loop {
            let loaded = self.rx.recv().await.expect("the reloader holds a sender");
            match self.gate.finished() {
                Outcome::Current => {
                    if let Ok(c) = &loaded.config {
                        self.mode_file = c.settings.mode_file.clone();
                    }
                    return loaded;
                }
                Outcome::Superseded => {
                    debug!("the files changed during the reload: loading them again");
                    self.spawn();
                }
            }
        }
    }
}

/// The blocking part: read, parse, decode prompts, resolve names.
fn load(path: &Path, running_mode_file: &Path) -> Loaded {
    // The text is read once, for the config and for the list of its files.
    let (config, text) = match std::fs::read_to_string(path) {
        Ok(text) => (config::parse(path, &text), Some(text)),
        // Let the config module word the error.
        Err(_) => (config::load(path), None),
    };
    let mode_file = config.as_ref().map_or(running_mode_file, |c| &c.settings.mode_file);
    let targets = Targets::of_config(path, text.as_deref(), mode_file);
    Loaded { config, targets }
}

/// Each account of `settings` as the engine registers it, with a fresh
/// unguessable Contact user: the provider's INVITEs carry it, a scanner
/// dialling our IP cannot.
pub fn registration_configs(settings: &Settings, sip_port: u16) -> anyhow::Result<Vec<RegistrationConfig>> {
    settings
        .registrations
        .iter()
        .map(|account| {
            let mut token = [0u8; 10];
            getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            Ok(RegistrationConfig {
                account: account.clone(),
                contact_user: format!("dw-{}", token.iter().map(|b| format!("{b:02x}")).collect::<String>()),
                local: SocketAddr::new(settings.advertise, sip_port),
                user_agent: settings.user_agent.clone(),
            })
        })
        .collect()
}

/// Swap a loaded config in. Settings that only a restart can change keep
/// their running values (and say so); the rest take effect now.
/// Returns false (and changes nothing) if the config has errors.
pub fn apply(
    engine: &mut Engine,
    running: &mut Settings,
    loaded: Result<Config, ConfigErrors>,
    sip_port: u16,
    now: Now,
) -> bool {
    let new = match loaded {
        Ok(new) => new,
        Err(errors) => {
            for e in &errors.0 {
                error!("{e}");
            }
            error!("config NOT reloaded: the running rules stay in force");
            return false;
        }
    };
    for w in &new.warnings {
        warn!("{w}");
    }
    let mut settings = new.settings;
    let restart_only = [
        ("sip.listen", settings.listen != running.listen),
        ("sip.advertise", settings.advertise != running.advertise),
        ("sip.rtp_ports", settings.rtp_ports != running.rtp_ports),
        ("sip.user_agent", settings.user_agent != running.user_agent),
        ("records.call_log", settings.call_log != running.call_log),
        ("provider.keepalive", settings.keepalive != running.keepalive),
        (
            "provider.keepalive_method",
            settings.keepalive_method != running.keepalive_method,
        ),
        ("media.rtp_timeout", settings.rtp_timeout != running.rtp_timeout),
    ];
    for (key, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        warn!(key, "changed in the config: this takes effect after a restart");
    }
    settings.listen = running.listen;
    settings.advertise = running.advertise;
    settings.rtp_ports = running.rtp_ports;
    settings.user_agent = running.user_agent.clone();
    settings.call_log = running.call_log.clone();
    settings.keepalive = running.keepalive;
    settings.keepalive_method = running.keepalive_method;
    settings.rtp_timeout = running.rtp_timeout;

    let registrations = match registration_configs(&settings, sip_port) {
        Ok(r) => r,
        Err(e) => {
            error!("config NOT reloaded: {e}");
            return false;
        }
    };
    engine.set_trusted(settings.trusted.clone());
    engine.set_policy(new.policy.clone(), new.prompts);
    if settings.registrations != running.registrations {
        engine.update_registrations(registrations, now);
    }
    if settings.phones != running.phones {
        engine.update_phones(settings.phones.clone(), now);
    }
    info!(
        path = %new.path.display(),
        shop = %new.policy.shop_name,
        numbers = new.policy.numbers.len(),
        warnings = new.warnings.len(),
        "config reloaded; new calls follow the new rules"
    );
    *running = settings;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_load_at_a_time_and_only_the_newest_is_applied() {
        let mut gate = LoadGate::default();
        assert!(gate.request(), "idle: load now");
        assert_eq!(gate.finished(), Outcome::Current);

        // Three requests while a load runs: one more load, not three.
        assert!(gate.request());
        assert!(!gate.request());
        assert!(!gate.request());
        assert!(!gate.request());
        assert_eq!(gate.finished(), Outcome::Superseded, "older than the files: dropped");
        assert!(!gate.request(), "the follow-up load is running");
        assert_eq!(gate.finished(), Outcome::Superseded);
        assert_eq!(gate.finished(), Outcome::Current, "the newest is applied");
        assert!(gate.request(), "idle again");
    }

    #[tokio::test]
    async fn a_reload_runs_off_the_loop_and_reports_every_error() {
        let dir = std::env::temp_dir().join(format!("denwa-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shop.toml");
        std::fs::write(&path, "[sip]\nlisten = \"nowhere\"\nbogus = 1\n").unwrap();
        let mut reloader = Reloader::new(path.clone(), dir.join("m.json"));
        reloader.request();
        let loaded = reloader.next().await;
        let Err(errors) = loaded.config else {
            panic!("an invalid config was accepted")
        };
        assert!(errors.0.iter().all(|e| e.file == path && e.line > 0), "{errors}");
        assert_eq!(
            loaded.targets.classify(&dir.join("m.json")),
            Some(super::super::watch::Change::Modes),
            "the running mode file stays watched"
        );

        // A missing file is reported by name too, without a line.
        std::fs::remove_file(&path).unwrap();
        reloader.request();
        let Err(errors) = reloader.next().await.config else {
            panic!("a missing config was accepted")
        };
        assert!(errors.0[0].to_string().contains("shop.toml"), "{errors}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
