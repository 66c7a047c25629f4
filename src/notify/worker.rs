//! The delivery worker: a plain thread, not a tokio task, because every
//! channel blocks (SMTP dialogue, HTTP, waiting for a program) for up to its
//! timeout, and the worker must keep working when the async shell is busy
//! or shutting down. It sleeps until the next delivery is due or it is woken.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::alert::{self, AlertNotice, BoxFull};
use super::queue::{Delivery, Outcome, Queue};
use super::{Attempt, ChannelKind, Notice, NotifyConfig, command, email, webhook};
use crate::records::voicemail::{StoreError, VoicemailStore};

/// Longest sleep between checks, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Makes one delivery attempt: looks up the message (or alert) and the
/// channel, and sends. No queue bookkeeping (see [`Queue::on_result`]).
pub fn attempt(delivery: &Delivery, store: &VoicemailStore, config: &NotifyConfig) -> Attempt {
    let Some(channel) = config.channel(&delivery.channel) else {
        // Kept and retried: a reload may bring the channel back, and a
        // message is never dropped silently (it gives up loudly, in time).
        return Attempt::Failed(format!("channel {:?} is no longer in [notify]", delivery.channel));
    };
    if let Some(alert_id) = delivery.alert_id {
        return match alert::get(store.connection(), alert_id) {
            Ok(Some(found)) => deliver_alert(&AlertNotice::new(found.box_full, config), &channel.kind, config),
            Ok(None) => Attempt::Permanent(format!("alert {alert_id} was deleted")),
            Err(e) => Attempt::Failed(format!("voicemail database: {e}")),
        };
    }
    let Some(message_id) = &delivery.message_id else {
        return Attempt::Permanent("a delivery for neither a message nor an alert".into());
    };
    let message = match store.get(message_id) {
        Ok(m) => m,
        Err(StoreError::NotFound(_)) => {
            return Attempt::Permanent(format!("message {message_id} was deleted"));
        }
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let file = store.file_path(&message);
    let notice = Notice::new(message, file, config);
    match &channel.kind {
        ChannelKind::Email { to } => email::deliver(&notice, config.smtp.as_ref(), to),
        ChannelKind::Webhook { url, timeout_secs } => {
            webhook::deliver(&notice, url, Duration::from_secs(*timeout_secs))
        }
        ChannelKind::Command {
            program,
            args,
            timeout_secs,
        } => command::deliver(&notice, program, args, Duration::from_secs(*timeout_secs)),
    }
}

fn deliver_alert(notice: &AlertNotice, kind: &ChannelKind, config: &NotifyConfig) -> Attempt {
    match kind {
        ChannelKind::Email { to } => email::deliver_alert(notice, config.smtp.as_ref(), to),
        ChannelKind::Webhook { url, timeout_secs } => {
            webhook::post_json(&notice.payload(), url, Duration::from_secs(*timeout_secs))
        }
        ChannelKind::Command {
            program,
            args,
            timeout_secs,
        } => command::run(program, args, notice.environment(), Duration::from_secs(*timeout_secs)),
    }
}

/// Stores a full-box alert and queues it on the line's channels.
pub fn record_alert(
    store: &VoicemailStore,
    config: &NotifyConfig,
    box_full: &BoxFull,
    now: jiff::Timestamp,
) -> rusqlite::Result<i64> {
    let channels = config.channels_for(&box_full.line);
    let id = alert::record(store.connection(), box_full, &channels, now)?;
    tracing::info!(line = %box_full.line, alert = id, channels = channels.len(), "voicemail box full: owner alert queued");
    Ok(id)
}

/// Sends every delivery due at `now` (re-reading the clock through `clock`
/// after each attempt, as attempts take time); returns how many were tried.
pub fn run_due(
    queue: &Queue,
    store: &VoicemailStore,
    config: &NotifyConfig,
    clock: &dyn Fn() -> jiff::Timestamp,
    stop: &dyn Fn() -> bool,
) -> rusqlite::Result<usize> {
    let mut tried = 0;
    let started = clock();
    // Only what was due when we started: a failure rescheduled "now" (zero
    // back-off) must not spin here.
    while let Some(delivery) = queue.next_due(started)? {
        let result = attempt(&delivery, store, config);
        let outcome = queue.on_result(&delivery, &result, clock())?;
        tried += 1;
        log(&delivery, &result, &outcome);
        if stop() {
            break;
        }
    }
    Ok(tried)
}

fn log(delivery: &Delivery, attempt: &Attempt, outcome: &Outcome) {
    let id = match (&delivery.message_id, delivery.alert_id) {
        (Some(message), _) => message.clone(),
        (None, alert) => format!("alert-{}", alert.unwrap_or_default()),
    };
    let (channel, attempts) = (&delivery.channel, delivery.attempts + 1);
    match (attempt, outcome) {
        (Attempt::Delivered, _) => {
            tracing::info!(message = %id, %channel, attempts, "voicemail notification delivered")
        }
        (Attempt::Failed(e), Outcome::RetryAt(at)) => tracing::warn!(
            message = %id, %channel, attempts, retry_at = %at, error = %e,
            "voicemail notification failed; will retry"
        ),
        (Attempt::Failed(e) | Attempt::Permanent(e), _) => tracing::error!(
            message = %id, %channel, attempts, error = %e,
            "VOICEMAIL NOTIFICATION GIVEN UP: nobody was told about this message; \
             fix [notify] and run `denwa voicemail retry-notify`"
        ),
    }
}

enum Command {
    Wake,
    Reload(Box<NotifyConfig>),
    /// Store and deliver this alert (the database write happens here, off
    /// the signalling thread).
    Alert(Box<BoxFull>),
}

/// The running worker. Dropping it stops the thread after the current attempt.
pub struct NotifyWorker {
    tx: Sender<Command>,
    /// Checked between attempts, so stopping need not wait for the queue.
    stopping: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl NotifyWorker {
    /// Starts the worker on the voicemail directory `dir`. Deliveries still
    /// pending from an earlier run are due at once.
    pub fn spawn(dir: &Path, config: NotifyConfig) -> Result<Self, StoreError> {
        let store = VoicemailStore::open(dir)?;
        let queue = Queue::open(dir, config.retry)?;
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stopping);
        let handle = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || worker_loop(queue, store, config, rx, &stop_flag))?;
        Ok(NotifyWorker {
            tx,
            stopping,
            handle: Some(handle),
        })
    }

    /// Something was queued: look now rather than at the next timer.
    pub fn wake(&self) {
        let _ = self.tx.send(Command::Wake);
    }

    /// [`wake`](Self::wake) for another thread to call.
    pub fn waker(&self) -> impl Fn() + Send + 'static {
        let tx = self.tx.clone();
        move || {
            let _ = tx.send(Command::Wake);
        }
    }

    /// A full box turned a caller away: the worker stores the alert, queues
    /// it on the line's channels and delivers it. Never blocks.
    pub fn alert(&self, box_full: BoxFull) {
        let _ = self.tx.send(Command::Alert(Box::new(box_full)));
    }

    /// New config (reload). Pending deliveries keep their channel names.
    pub fn reload(&self, config: NotifyConfig) {
        let _ = self.tx.send(Command::Reload(Box::new(config)));
    }

    /// Stops after the attempt in progress and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Command::Wake);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for NotifyWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker_loop(
    mut queue: Queue,
    store: VoicemailStore,
    mut config: NotifyConfig,
    rx: Receiver<Command>,
    stopping: &AtomicBool,
) {
    let clock = jiff::Timestamp::now;
    let stop = || stopping.load(Ordering::Relaxed);
    while !stop() {
        // A reload sent before a message was queued must be in force before
        // that message is tried (the thread may start late on a busy machine).
        while let Ok(cmd) = rx.try_recv() {
            take(cmd, &mut queue, &store, &mut config, &clock);
        }
        if let Err(e) = run_due(&queue, &store, &config, &clock, &stop) {
            tracing::error!(error = %e, "voicemail notification queue: database error");
        }
        let wait = match queue.next_wakeup() {
            Ok(Some(at)) => Duration::try_from(at.duration_since(clock())).unwrap_or(Duration::ZERO),
            Ok(None) | Err(_) => MAX_SLEEP,
        };
        let mut next = match rx.recv_timeout(wait.min(MAX_SLEEP)) {
            Ok(cmd) => Some(cmd),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while let Some(cmd) = next {
            take(cmd, &mut queue, &store, &mut config, &clock);
            next = rx.try_recv().ok();
        }
    }
}

fn take(
    cmd: Command,
    queue: &mut Queue,
    store: &VoicemailStore,
    config: &mut NotifyConfig,
    clock: &dyn Fn() -> jiff::Timestamp,
) {
    match cmd {
        Command::Wake => {}
        Command::Reload(new) => {
            queue.set_retry(new.retry);
            *config = *new;
        }
        Command::Alert(box_full) => {
            if let Err(e) = record_alert(store, config, &box_full, clock()) {
                tracing::error!(line = %box_full.line, error = %e,
                    "voicemail box full, and the owner alert could not be queued");
            }
        }
    }
}
