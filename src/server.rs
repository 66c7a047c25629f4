//! The tokio shell around the sans-IO [`Engine`]: the SIP socket, timers,
//! RTP sockets, the media thread, the call log, reload and shutdown.
//! Reloading lives in `reload` (off the loop), noticing edits in `watch`.

mod reload;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tracing::{debug, error, info, warn};

use crate::config::{self, Config};
use crate::engine::{Engine, EngineConfig, Now, Output, PortAllocator};
use crate::media::{MediaCommand, MediaCounters, MediaEvent, MediaHandle, PortPool, PortReleaser, media_thread_of};
use crate::records::{self, call_log::CallLog, status::StatusFile, status::StatusSender};
use crate::sip::registrar::{BindingsSnapshot, Registrar, RegistrarConfig};
use crate::sip::transaction::Timers;
use reload::Reloader;
use watch::{FileWatcher, Targets};

fn now() -> Now {
    Now {
        at: Instant::now(),
        wall: jiff::Timestamp::now(),
    }
}

/// The engine's port allocator: pairs come from media's pool and go,
/// bound, straight to the media thread; nothing else holds the sockets.
struct MediaPorts {
    pool: PortPool,
    media: MediaHandle,
}

impl PortAllocator for MediaPorts {
    fn allocate(&mut self, beside: Option<u16>) -> Option<u16> {
        let threads = self.media.threads();
        let pair = match beside {
            Some(other) if threads > 1 => {
                let thread = media_thread_of(other, threads);
                self.pool
                    .reserve_where(|port| media_thread_of(port, threads) == thread)?
            }
            _ => self.pool.reserve()?,
        };
        let port = pair.port;
        self.media.send(MediaCommand::Open { pair });
        Some(port)
    }
}

/// Every call holds an RTP socket: lift the soft open-files limit to the hard
/// one, as servers do (the usual soft default of 1024 would cap us near 1000 calls).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Run the engine until SIGINT/SIGTERM. SIGHUP, or an edit of the config
/// or of a file it names, reloads the config; an edit of the mode file
/// applies the new modes.
pub async fn run(config: Config) -> anyhow::Result<()> {
    raise_open_files_limit();
    crate::media::thread::raise_nice();
    let mut settings = config.settings.clone();
    let socket = UdpSocket::bind(settings.listen)
        .await
        .with_context(|| format!("binding SIP on {}", settings.listen))?;
    let local = socket.local_addr()?;
    let (media_tx, mut media_rx) = tokio::sync::mpsc::unbounded_channel();
    let media = MediaHandle::spawn(media_tx, settings.media_realtime, settings.media_threads)?;
    let pool = PortPool::new(settings.advertise, settings.rtp_ports);
    if pool.capacity() == 0 {
        anyhow::bail!("sip.rtp_ports {:?} holds no RTP/RTCP port pair", settings.rtp_ports);
    }
    let releaser = pool.releaser();
    let ports = MediaPorts {
        pool,
        media: media.clone(),
    };
    let call_log = CallLog::open(&settings.call_log)
        .with_context(|| format!("opening the call log {}", settings.call_log.display()))?;
    let status = records::status::channel();
    let status_writer = records::status::write_file_task(&status, settings.status_file.clone());
    // Recordings a crash interrupted are recovered and indexed, their
    // notifications queued; the notification worker starts.
    let mut voicemail = crate::records::startup::start(&settings.voicemail, &settings.notify, jiff::Timestamp::now())
        .map_err(anyhow::Error::msg)?;
    // Recording adapters report silence and finished messages here.
    let (recorder_tx, mut recorder_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut engine = Engine::new(
        EngineConfig {
            advertise: settings.advertise,
            sip_port: local.port(),
            user_agent: settings.user_agent.clone(),
            timers: Timers::default(),
            trusted: settings.trusted.clone(),
            keepalive: settings.keepalive,
            keepalive_method: settings.keepalive_method,
            rtp_timeout: settings.rtp_timeout,
        },
        config.policy.clone(),
        config.prompts.clone(),
        Box::new(ports),
        u64::from_le_bytes(seed),
    );
    for reg in reload::registration_configs(&settings, local.port())? {
        engine.add_registration(reg, jiff::Timestamp::now());
    }
    engine.set_phones(settings.phones.clone());
    let bindings_file = config::bindings_file_of(&settings.status_file);
    let phones = settings.phones.registering();
    if !phones.is_empty() {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let realm = settings.registrar_realm.clone();
        let mut cfg = RegistrarConfig::new(
            realm,
            SocketAddr::new(settings.advertise, local.port()),
            &settings.user_agent,
        );
        cfg.digest.algorithms = settings.digest_algorithms.clone();
        engine.set_registrar(Registrar::new(cfg, phones, secret, Instant::now()));
        if let Some(snapshot) = load_bindings(&bindings_file) {
            let kept = engine.restore_bindings(now(), snapshot);
            info!(kept, file = %bindings_file.display(), "staff phone bindings restored");
        }
    }
    apply_modes(&mut engine, &settings.mode_file);
    engine.start(now());
    info!(
        shop = %config.policy.shop_name,
        listen = %local,
        numbers = config.policy.numbers.len(),
        call_log = %settings.call_log.display(),
        "denwa is listening"
    );
    for n in config.policy.numbers.values() {
        info!(line = %n.name, number = %n.number, label = %n.label, rules = n.rules.len(), "number ready");
    }

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // One listener for the whole run: a signal that arrives while the loop
    // is busy is kept for the next poll, never missed.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut buf = vec![0u8; 65_536];
    let mut shutting_down: Option<Instant> = None;
    let mut last_status = Instant::now();
    publish_status(&status, &engine, media.counters(), local, &voicemail);
    // After the status file: its folder (that of the mode file) now exists.
    let config_text = std::fs::read_to_string(&config.path).ok();
    let mut watcher = FileWatcher::start(Targets::of_config(
        &config.path,
        config_text.as_deref(),
        &settings.mode_file,
    ));
    let mut reloader = Reloader::new(config.path.clone(), settings.mode_file.clone());
    loop {
        // Send what the engine has to say before waiting again (at start:
        // the first REGISTERs; otherwise what the last input caused).
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Transmit { to, data } => {
                    if let Err(e) = socket.try_send_to(&data, to) {
                        // The kernel buffer is full: wait for room rather than drop.
                        if e.kind() == std::io::ErrorKind::WouldBlock {
                            let _ = socket.send_to(&data, to).await;
                        } else {
                            debug!(%to, error = %e, "SIP send failed");
                        }
                    }
                }
                Output::Media(command) => media.send(command),
                Output::PhoneBindings(snapshot) => save_bindings(&bindings_file, &snapshot),
                Output::Voicemail(request) => crate::engine::voicemail::serve_request(
                    &mut engine,
                    &voicemail,
                    &media,
                    &recorder_tx,
                    request,
                    now(),
                ),
                Output::CallEnded(record) => {
                    info!(
                        call_id = %record.call_id,
                        line = %record.line,
                        status = record.final_status,
                        hung_up_by = record.hung_up_by.map_or("", |h| h.as_str()),
                        "call ended"
                    );
                    call_log.write(record);
                }
            }
        }
        if let Some(started) = shutting_down
            && ((engine.active_calls() == 0 && !engine.unregistering()) || started.elapsed() > Duration::from_secs(3))
        {
            engine.end_remaining_calls(now());
            while let Some(output) = engine.poll_output() {
                if let Output::CallEnded(record) = output {
                    call_log.write(record);
                }
            }
            publish_status(&status, &engine, media.counters(), local, &voicemail);
            info!(sip = ?engine.stats, media = ?media.counters(), "denwa stopped");
            call_log.close();
            drop(status);
            let _ = status_writer.await;
            voicemail.stop();
            return Ok(());
        }
        // Wake for the status file too: an idle engine must still show it is alive.
        let status_due = last_status + STATUS_EVERY;
        let deadline = engine.poll_timeout().map_or(status_due, |t| t.min(status_due));
        let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let now = now();
                match received {
                    Ok((n, from)) => handle_datagram(&mut engine, &settings, now, from, &buf[..n]),
                    Err(e) => debug!(error = %e, "SIP receive error"),
                }
                // Take whatever else is queued before going round the loop.
                for _ in 0..64 {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => handle_datagram(&mut engine, &settings, now, from, &buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            Some(event) = media_rx.recv() => handle_media_event(&mut engine, &releaser, event),
            Some(event) = recorder_rx.recv() => crate::engine::voicemail::serve_event(&mut engine, &voicemail, event, now()),
            _ = timer => {}
            _ = hangup.recv(), if shutting_down.is_none() => {
                info!(path = %config.path.display(), "SIGHUP: reloading the config");
                reloader.request();
            }
            due = watcher.next(), if shutting_down.is_none() => {
                if due.modes {
                    apply_modes(&mut engine, &settings.mode_file);
                }
                if due.config {
                    info!(path = %config.path.display(), "the config or a file it names changed: reloading");
                    reloader.request();
                }
            }
            loaded = reloader.next(), if shutting_down.is_none() => {
                let mode_file = settings.mode_file.clone();
                if reload::apply(&mut engine, &mut settings, loaded.config, local.port(), now()) {
                    engine.status_changed = true;
                    voicemail.reload(&settings.voicemail, &settings.notify);
                    if settings.mode_file != mode_file {
                        apply_modes(&mut engine, &settings.mode_file);
                    }
                }
                watcher.retarget(loaded.targets);
            }
            _ = interrupt.recv(), if shutting_down.is_none() => shutting_down = Some(begin_shutdown(&mut engine)),
            _ = terminate.recv(), if shutting_down.is_none() => shutting_down = Some(begin_shutdown(&mut engine)),
        }
        engine.handle_timeout(now());
        if engine.status_changed || last_status.elapsed() >= STATUS_EVERY {
            engine.status_changed = false;
            last_status = Instant::now();
            publish_status(&status, &engine, media.counters(), local, &voicemail);
        }
    }
}

fn handle_media_event(engine: &mut Engine, releaser: &PortReleaser, event: MediaEvent) {
    if let MediaEvent::Closed { port, .. } = &event {
        // Every earlier event about this port has been handled: it may serve the next call.
        releaser.release(*port);
    }
    engine.handle_media_event(now(), event);
}

/// The staff phones' bindings, written whole (temp file + rename).
fn save_bindings(path: &Path, snapshot: &BindingsSnapshot) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(snapshot).expect("bindings serialise"))?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        warn!(path = %path.display(), error = %e, "cannot save the staff phones' bindings");
    }
}

fn load_bindings(path: &Path) -> Option<BindingsSnapshot> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring an unreadable bindings file");
            None
        }
    }
}

fn handle_datagram(engine: &mut Engine, settings: &config::Settings, now: Now, from: SocketAddr, data: &[u8]) {
    if data.len() > settings.max_message_bytes {
        debug!(%from, bytes = data.len(), "dropped oversized datagram");
        return;
    }
    engine.handle_datagram(now, from, data);
}

fn begin_shutdown(engine: &mut Engine) -> Instant {
    info!(
        active = engine.active_calls(),
        "shutting down: hanging up calls, unregistering numbers"
    );
    let now = now();
    engine.hang_up_all(now);
    engine.unregister_all(now);
    Instant::now()
}

const STATUS_EVERY: Duration = records::status::REFRESH_EVERY;

/// Publish the engine's status (the status file is written from the channel).
fn publish_status(
    status: &StatusSender,
    engine: &Engine,
    media: MediaCounters,
    listen: SocketAddr,
    voicemail: &crate::records::startup::VoicemailService,
) {
    let now = Instant::now();
    let snapshot = StatusFile {
        updated_at: jiff::Timestamp::now(),
        refresh_every_s: STATUS_EVERY.as_secs(),
        pid: std::process::id(),
        listen,
        active_calls: engine.active_calls(),
        media: serde_json::to_value(media).expect("counters serialise"),
        registrations: engine
            .registration_status(now)
            .into_iter()
            .map(|r| serde_json::to_value(r).expect("status serialises"))
            .collect(),
        phones: engine
            .phone_status(now)
            .into_iter()
            .map(|p| serde_json::to_value(p).expect("status serialises"))
            .collect(),
        voicemail: serde_json::to_value(voicemail.status()).expect("status serialises"),
    };
    status.send_replace(Some(std::sync::Arc::new(snapshot)));
}

/// Read the mode file (`denwa mode` replaces it atomically) into the engine;
/// a file that does not parse leaves the running modes in force.
fn apply_modes(engine: &mut Engine, path: &Path) {
    match config::mode_file::read(path) {
        Ok(modes) => {
            info!(path = %path.display(), "modes read; the next call follows them");
            engine.set_modes(modes);
        }
        Err(e) => error!("{e}; the modes in force stay as they were"),
    }
}
