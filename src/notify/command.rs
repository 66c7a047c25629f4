//! Command channel: run a program with the message in its environment.
//! Exit status 0 is success; a program still running at the timeout is
//! killed with its whole process group and the attempt counts as failed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Attempt, Notice};

/// The environment the program gets (besides the inherited one).
pub fn environment(notice: &Notice) -> Vec<(&'static str, String)> {
    let m = &notice.message;
    vec![
        ("DENWA_VM_EVENT", "voicemail".into()),
        ("DENWA_VM_ID", m.id.clone()),
        ("DENWA_VM_LINE", m.line.clone()),
        ("DENWA_VM_CALLER", m.caller.clone()),
        ("DENWA_VM_CALLER_NAME", m.caller_name.clone().unwrap_or_default()),
        ("DENWA_VM_TIME", m.received_at.to_string()),
        ("DENWA_VM_LOCAL_TIME", notice.local_time.clone()),
        ("DENWA_VM_DURATION_MS", m.duration_ms.to_string()),
        ("DENWA_VM_FILE", notice.file.display().to_string()),
        ("DENWA_VM_URL", notice.download_url.clone().unwrap_or_default()),
        ("DENWA_VM_RECOVERED", if m.recovered { "1" } else { "0" }.into()),
    ]
}

/// Keep this much of the program's stderr for the error message.
const STDERR_TAIL: usize = 400;

pub fn deliver(notice: &Notice, program: &Path, args: &[String], timeout: Duration) -> Attempt {
    run(program, args, environment(notice), timeout)
}

/// Runs `program` with `env` added to its environment.
pub fn run(program: &Path, args: &[String], env: Vec<(&'static str, String)>, timeout: Duration) -> Attempt {
    let mut child = match Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the helpers it started.
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Attempt::Failed(format!("cannot run {}: {e}", program.display())),
    };
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Read stderr on the side so a chatty program cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Attempt::Failed(format!("waiting for {}: {e}", program.display())),
        }
    };
    let Some(status) = status else {
        // SAFETY: signals the process group we created; no memory involved.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
        let _ = child.wait();
        return Attempt::Failed(format!(
            "{} did not finish within {} s; killed",
            program.display(),
            timeout.as_secs_f32()
        ));
    };
    if status.success() {
        return Attempt::Delivered;
    }
    let stderr = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&stderr);
    let text = text.trim();
    let start = text.len().saturating_sub(STDERR_TAIL);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    Attempt::Failed(format!(
        "{} exited with {status}{}{}",
        program.display(),
        if text.is_empty() { "" } else { ": " },
        &text[start..]
    ))
}
