//! Noticing edits: which files the running config depends on, a watcher on
//! the folders that hold them (editors save by writing a new file and
//! renaming it over the old one, which a watch on the file itself would
//! miss), and a debounce so that one save is one reload.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What an edit calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The config, a prompt, a caller list, a calendar or a password file: reload.
    Config,
    /// The mode file `denwa mode` writes: re-read it.
    Modes,
}

/// The files a config depends on, as absolute paths without `.` or `..`
/// (the form in which the watcher reports them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Files whose change means a reload.
    config_files: BTreeSet<PathBuf>,
    /// Folders any of whose WAV files counts (the prompts).
    config_dirs: BTreeSet<PathBuf>,
    mode_file: PathBuf,
}

/// The config keys that name a file the config reads, relative to its folder.
const FILE_KEYS: [&str; 4] = ["callers_file", "closed_days", "calendar", "password_file"];

impl Targets {
    /// The targets of the config at `config` whose text is `toml` (`None`
    /// when it could not be read: then only the file itself is watched).
    /// The config module does not list the files it read, so they are found
    /// here by their keys, wherever they appear.
    pub fn of_config(config: &Path, toml: Option<&str>, mode_file: &Path) -> Targets {
        let config = absolute(config);
        let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut targets = Targets {
            config_files: BTreeSet::from([config]),
            config_dirs: BTreeSet::new(),
            mode_file: absolute(mode_file),
        };
        let Some(table) = toml.and_then(|t| t.parse::<toml::Table>().ok()) else {
            return targets;
        };
        let prompts = table
            .get("prompts")
            .and_then(|p| p.get("dir"))
            .and_then(|d| d.as_str())
            .unwrap_or("../prompts");
        targets.config_dirs.insert(normalise(&base.join(prompts)));
        let mut named = Vec::new();
        collect_files(&toml::Value::Table(table), &mut named);
        for name in named {
            targets.config_files.insert(normalise(&base.join(name)));
        }
        targets
    }

    /// The folders to watch.
    pub fn dirs(&self) -> BTreeSet<PathBuf> {
        let parents = self
            .config_files
            .iter()
            .chain([&self.mode_file])
            .filter_map(|f| f.parent().map(Path::to_path_buf));
        self.config_dirs.iter().cloned().chain(parents).collect()
    }

    /// What a change to `path` (as the watcher reports it) calls for.
    pub fn classify(&self, path: &Path) -> Option<Change> {
        let path = normalise(path);
        if path == self.mode_file {
            return Some(Change::Modes);
        }
        if self.config_files.contains(&path) {
            return Some(Change::Config);
        }
        // Only WAV files: the prompts folder may also hold our logs (a reload
        // that logs must not trigger the next one) or a tool's hidden temp files.
        let name = path.file_name()?.to_str()?;
        let prompt = !name.starts_with('.')
            && Path::new(name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
        let in_prompts = path.parent().is_some_and(|dir| self.config_dirs.contains(dir));
        (in_prompts && prompt).then_some(Change::Config)
    }
}

/// Every string (or list of strings) under a key in [`FILE_KEYS`], at any depth.
fn collect_files(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (key, v) in t {
                if FILE_KEYS.contains(&key.as_str()) {
                    match v {
                        toml::Value::String(s) => out.push(s.clone()),
                        toml::Value::Array(items) => {
                            out.extend(items.iter().filter_map(|i| i.as_str().map(String::from)));
                        }
                        _ => {}
                    }
                } else {
                    collect_files(v, out);
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_files(v, out)),
        _ => {}
    }
}

/// `path` made absolute (against the current folder) and without `.`/`..`,
/// without touching the disk: the files need not exist yet.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        normalise(path)
    } else {
        normalise(&std::env::current_dir().unwrap_or_default().join(path))
    }
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Quiet time after the last event before a reload: a save is often several
/// events (write, rename, attribute change), and a copy of many prompts more.
const CONFIG_QUIET: Duration = Duration::from_millis(300);
/// `denwa mode` replaces its file in one rename: apply it almost at once.
const MODES_QUIET: Duration = Duration::from_millis(50);
/// Files that never stop changing still get reloaded this often.
const CONFIG_MAX_WAIT: Duration = Duration::from_secs(2);

/// What is due after the quiet time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub config: bool,
    pub modes: bool,
}

/// Trailing-edge debounce, sans-IO: events go in with the time, a reload
/// comes out once they stop for [`CONFIG_QUIET`] (or after [`CONFIG_MAX_WAIT`]).
#[derive(Debug, Default)]
pub struct Debounce {
    config: Option<(Instant, Instant)>,
    modes: Option<Instant>,
}

impl Debounce {
    pub fn note(&mut self, change: Change, now: Instant) {
        match change {
            Change::Config => {
                let first = self.config.map_or(now, |(first, _)| first);
                self.config = Some((first, now));
            }
            Change::Modes => self.modes = Some(now),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let config = self
            .config
            .map(|(first, last)| (last + CONFIG_QUIET).min(first + CONFIG_MAX_WAIT));
        let modes = self.modes.map(|last| last + MODES_QUIET);
        match (config, modes) {
            (Some(c), Some(m)) => Some(c.min(m)),
            (c, m) => c.or(m),
        }
    }

    /// What is due at `now` (and forget it).
    pub fn poll_due(&mut self, now: Instant) -> Due {
        let config = self
            .config
            .is_some_and(|(first, last)| now >= (last + CONFIG_QUIET).min(first + CONFIG_MAX_WAIT));
        let modes = self.modes.is_some_and(|last| now >= last + MODES_QUIET);
        if config {
            self.config = None;
        }
        if modes {
            self.modes = None;
        }
        Due { config, modes }
    }
}

/// The folder watcher: `notify` reports on its own thread; the paths reach
/// the loop through a channel and are classified and debounced there.
pub struct FileWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    targets: Targets,
    events: mpsc::UnboundedReceiver<PathBuf>,
    debounce: Debounce,
}

impl FileWatcher {
    /// Watch `targets`. If the system refuses a watcher, say so: SIGHUP
    /// still reloads.
    pub fn start(targets: Targets) -> FileWatcher {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Reading a file (ours included: a reload opens them all) is no change.
            Ok(event) if !matches!(event.kind, notify::EventKind::Access(_)) => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "file watcher error"),
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the config's files; reload with SIGHUP after editing");
                None
            }
        };
        let mut this = FileWatcher {
            watcher,
            watched: BTreeSet::new(),
            targets: Targets::default(),
            events,
            debounce: Debounce::default(),
        };
        this.retarget(targets);
        this
    }

    /// Follow a reloaded config's files: watch new folders, drop old ones.
    pub fn retarget(&mut self, targets: Targets) {
        use notify::Watcher as _;
        let wanted = targets.dirs();
        self.targets = targets;
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for dir in self.watched.difference(&wanted) {
            let _ = watcher.unwatch(dir);
        }
        self.watched.retain(|d| wanted.contains(d));
        for dir in wanted {
            if self.watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(dir = %dir.display(), "watching for edits");
                    self.watched.insert(dir);
                }
                Err(e) => warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cannot watch this folder; after editing its files, reload with SIGHUP"
                ),
            }
        }
    }

    /// Wait until an edit is due for action (cancel-safe: the state lives in `self`).
    pub async fn next(&mut self) -> Due {
        loop {
            let due = self.debounce.poll_due(Instant::now());
            if due != Due::default() {
                return due;
            }
            let deadline = self.debounce.poll_timeout();
            tokio::select! {
                Some(path) = self.events.recv() => {
                    if let Some(change) = self.targets.classify(&path) {
                        debug!(path = %path.display(), ?change, "file changed");
                        self.debounce.note(change, Instant::now());
                    }
                }
                _ = sleep_until(deadline) => {}
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
[shop]
closed_days = "closed-days.txt"
calendar = "cal/shop.ics"
[sip]
listen = "127.0.0.1:5060"
[prompts]
dir = "../prompts"
[records]
call_log = "../var/calls.jsonl"
[phones.desk]
password_file = "secrets/desk"
[[numbers.public.rules]]
when = { callers_file = ["sales.txt", "../lists/vip.txt"] }
announce = "closed.wav"
"#;

    fn targets() -> Targets {
        Targets::of_config(
            Path::new("/srv/shop/config/./shop.toml"),
            Some(SHOP),
            Path::new("/srv/shop/config/../var/shop.modes.json"),
        )
    }

    #[test]
    fn the_files_a_config_names_are_found_and_their_folders_watched() {
        let t = targets();
        let files: Vec<&str> = t.config_files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            files,
            [
                "/srv/shop/config/cal/shop.ics",
                "/srv/shop/config/closed-days.txt",
                "/srv/shop/config/sales.txt",
                "/srv/shop/config/secrets/desk",
                "/srv/shop/config/shop.toml",
                "/srv/shop/lists/vip.txt",
            ]
        );
        let dirs: Vec<PathBuf> = t.dirs().into_iter().collect();
        let expected: Vec<PathBuf> = [
            "/srv/shop/config",
            "/srv/shop/config/cal",
            "/srv/shop/config/secrets",
            "/srv/shop/lists",
            "/srv/shop/prompts",
            "/srv/shop/var",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, expected);
    }

    #[test]
    fn changes_are_classified_by_path() {
        let t = targets();
        let at = |p: &str| t.classify(Path::new(p));
        assert_eq!(at("/srv/shop/config/shop.toml"), Some(Change::Config));
        assert_eq!(at("/srv/shop/config/sales.txt"), Some(Change::Config));
        assert_eq!(at("/srv/shop/prompts/closed.wav"), Some(Change::Config));
        assert_eq!(at("/srv/shop/prompts/New-Greeting.WAV"), Some(Change::Config));
        assert_eq!(at("/srv/shop/var/shop.modes.json"), Some(Change::Modes));
        // Our own output, the editor's scratch files, unrelated neighbours.
        assert_eq!(at("/srv/shop/var/shop.status.json"), None);
        assert_eq!(at("/srv/shop/var/calls.jsonl"), None);
        assert_eq!(at("/srv/shop/var/shop.modes.json.tmp42"), None);
        assert_eq!(at("/srv/shop/config/.shop.toml.swp"), None);
        assert_eq!(at("/srv/shop/config/shop.toml~"), None);
        assert_eq!(at("/srv/shop/prompts/.closed.wav.swp"), None);
        assert_eq!(at("/srv/shop/prompts/.closed.wav"), None);
        assert_eq!(at("/srv/shop/prompts/denwa.log"), None);
        assert_eq!(at("/srv/shop/config/README"), None);
    }

    #[test]
    fn an_unreadable_config_still_watches_itself_and_the_mode_file() {
        let t = Targets::of_config(
            Path::new("/etc/denwa/shop.toml"),
            Some("[sip"),
            Path::new("/var/m.json"),
        );
        assert_eq!(t.classify(Path::new("/etc/denwa/shop.toml")), Some(Change::Config));
        assert_eq!(t.classify(Path::new("/var/m.json")), Some(Change::Modes));
        assert_eq!(t.dirs().len(), 2);
        // Without [prompts] dir, the default folder beside the config's.
        let t = Targets::of_config(Path::new("/etc/denwa/shop.toml"), Some(""), Path::new("/var/m.json"));
        assert_eq!(t.classify(Path::new("/etc/prompts/a.wav")), Some(Change::Config));
        // A config whose prompts share its folder with the logs and records.
        let t = Targets::of_config(
            Path::new("/d/shop.toml"),
            Some("[prompts]\ndir = \".\""),
            Path::new("/d/m.json"),
        );
        assert_eq!(t.classify(Path::new("/d/five.wav")), Some(Change::Config));
        for ours in ["/d/denwa.log", "/d/calls.jsonl", "/d/status.json", "/d/status.json.tmp"] {
            assert_eq!(t.classify(Path::new(ours)), None, "{ours}");
        }
    }

    /// The real watcher on a temporary folder: an editor's save by rename,
    /// then `denwa mode`'s atomic replace.
    #[tokio::test]
    async fn saves_by_rename_are_noticed_once() {
        let dir = std::env::temp_dir().join(format!("denwa-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("var")).unwrap();
        let config = dir.join("shop.toml");
        std::fs::write(&config, "[sip]\n").unwrap();
        let modes = dir.join("var/shop.modes.json");
        let mut watcher = FileWatcher::start(Targets::of_config(&config, Some(""), &modes));

        std::fs::write(dir.join(".shop.toml.swp"), "scratch").unwrap();
        std::fs::write(dir.join("shop.toml.new"), "[sip]\nlisten = \"127.0.0.1:5060\"\n").unwrap();
        std::fs::rename(dir.join("shop.toml.new"), &config).unwrap();
        let due = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .expect("the save is noticed");
        assert_eq!(
            due,
            Due {
                config: true,
                modes: false
            }
        );

        crate::config::mode_file::write(&modes, &Default::default()).unwrap();
        let due = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .expect("the mode change is noticed");
        assert_eq!(
            due,
            Due {
                config: false,
                modes: true
            }
        );

        std::fs::write(dir.join("var/shop.status.json"), "{}").unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(600), watcher.next())
                .await
                .is_err(),
            "our own status file is no edit"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_burst_of_events_is_one_reload_after_the_quiet_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = Debounce::default();
        assert_eq!(d.poll_timeout(), None);
        // An editor's save: write, rename, attributes, 0–20 ms.
        for n in [0, 5, 20] {
            d.note(Change::Config, ms(n));
        }
        assert_eq!(d.poll_timeout(), Some(ms(320)));
        assert_eq!(d.poll_due(ms(319)), Due::default());
        assert_eq!(
            d.poll_due(ms(320)),
            Due {
                config: true,
                modes: false
            }
        );
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.poll_due(ms(10_000)), Due::default(), "one reload per burst");
    }

    #[test]
    fn endless_changes_still_reload_every_two_seconds_and_modes_go_first() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = Debounce::default();
        let mut reloads = Vec::new();
        for n in (0..5000).step_by(100) {
            if d.poll_due(ms(n)).config {
                reloads.push(n);
            }
            d.note(Change::Config, ms(n));
        }
        assert_eq!(reloads, [2000, 4000]);

        let mut d = Debounce::default();
        d.note(Change::Config, ms(0));
        d.note(Change::Modes, ms(10));
        assert_eq!(d.poll_timeout(), Some(ms(60)));
        assert_eq!(
            d.poll_due(ms(60)),
            Due {
                config: false,
                modes: true
            }
        );
        assert_eq!(d.poll_timeout(), Some(ms(300)));
    }
}
