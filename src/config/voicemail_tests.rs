use std::path::Path;

use super::*;
use crate::config::tests::check;

/// One line, "public" = 0501110001; `check` puts five lines before this,
/// so the body's first line is line 6 of the file.
const LINES: &str = "[shop]\ntimezone = \"Asia/Tokyo\"\n\
[numbers.public]\nnumber = \"0501110001\"\n[[numbers.public.rules]]\nannounce = \"hello.wav\"\n\
[numbers.delivery]\nnumber = \"0501110002\"\n[[numbers.delivery.rules]]\nannounce = \"hello.wav\"\n";

fn secret_file(content: &str) -> PathBuf {
    let dir = crate::records::test_dir("config-vm-secret");
    let path = dir.join("smtp");
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn voicemail_and_notify_compile() {
    let secret = secret_file("s3cret-pw\n");
    let c = check(&format!(
        "{LINES}\
[voicemail]
dir = \"vm\"
max_messages = 30
max_megabytes = 50
retention_days = 60
retention = \"delete\"
[voicemail.lines.0501110002]
max_messages = 5
[notify]
[notify.smtp]
host = \"smtp.example.jp\"
port = 587
security = \"starttls\"
username = \"denwa@shop.example\"
password_file = \"{}\"
from = \"denwa <denwa@shop.example>\"
[notify.retry]
first_secs = 30
[[notify.channel]]
name = \"owner\"
type = \"email\"
to = [\"owner@shop.example\"]
lines = [\"0501110001\"]
[[notify.channel]]
name = \"chat\"
type = \"webhook\"
url = \"https://chat.example/hook\"
enabled = false
[[notify.channel]]
name = \"pager\"
type = \"command\"
program = \"notify-send\"
",
        secret.display()
    ))
    .unwrap();
    let vm = &c.settings.voicemail;
    assert_eq!(vm.dir, Path::new("vm"), "relative to the config's folder");
    assert_eq!(
        vm.limits,
        BoxLimits {
            max_messages: Some(30),
            max_bytes: Some(50_000_000)
        }
    );
    // Written by number, kept by name; the bytes limit is inherited.
    assert_eq!(
        vm.limits_for("delivery"),
        BoxLimits {
            max_messages: Some(5),
            max_bytes: Some(50_000_000)
        }
    );
    assert_eq!(
        vm.retention,
        Some(Retention {
            days: 60,
            action: RetentionAction::Delete
        })
    );
    let n = &c.settings.notify;
    assert_eq!(n.time_zone.as_deref(), Some("Asia/Tokyo"), "the shop's zone by default");
    assert_eq!(n.retry.first, std::time::Duration::from_secs(30));
    // The disabled webhook is left out; lines are names.
    assert_eq!(n.channels_for("public"), ["owner", "pager"]);
    assert_eq!(n.channels_for("delivery"), ["pager"]);
    let smtp = n.smtp.as_ref().unwrap();
    assert_eq!(smtp.password.as_ref().unwrap().expose(), "s3cret-pw");
    assert!(!format!("{c:?}").contains("s3cret"), "the password never reaches Debug");
}

#[test]
fn defaults_without_sections() {
    let c = check(LINES).unwrap();
    assert_eq!(c.settings.voicemail.dir, Path::new("../var/voicemail"));
    assert_eq!(c.settings.voicemail.limits, BoxLimits::default());
    assert_eq!(c.settings.voicemail.retention, None);
    assert!(c.settings.notify.channels.is_empty());
}

#[test]
fn email_off_needs_no_password() {
    let c = check(&format!(
        "{LINES}\
[notify.smtp]
host = \"smtp.example.jp\"
port = 587
security = \"starttls\"
username = \"denwa@shop.example\"
password_env = \"DENWA_TEST_SMTP_SURELY_UNSET\"
from = \"denwa@shop.example\"
[[notify.channel]]
name = \"owner\"
type = \"email\"
to = [\"owner@shop.example\"]
enabled = false
"
    ))
    .unwrap();
    assert!(c.settings.notify.channels.is_empty());
    assert_eq!(c.settings.notify.smtp.as_ref().unwrap().password, None);
}

#[test]
fn mistakes_are_reported_with_their_lines() {
    let e = check(&format!(
        "{LINES}\
[voicemail]
max_messages = 0
retention = \"shred\"
[voicemail.lines.kitchen]
max_messages = 3
[notify.smtp]
host = \"smtp.example.jp\"
port = 587
security = \"starttls\"
username = \"denwa@shop.example\"
password = \"hunter2\"
password_env = \"DENWA_TEST_SMTP_SURELY_UNSET\"
from = \"denwa@shop.example\"
[[notify.channel]]
name = \"owner\"
type = \"email\"
too = [\"owner@shop.example\"]
[[notify.channel]]
name = \"mail2\"
type = \"email\"
to = [\"owner@shop.example\"]
lines = [\"0509999999\"]
[[notify.channel]]
name = \"chat\"
type = \"webhook\"
url = \"chat.example/hook\"
[[notify.channel]]
name = \"chat\"
type = \"command\"
program = \"notify-send\"
[[notify.channel]]
name = \"mail3\"
type = \"email\"
to = [\"owner@shop.example\"]
"
    ))
    .unwrap_err();
    let text = e.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    for needle in [
        "shop.toml:17: voicemail.max_messages: must be a whole number above 0",
        "shop.toml:18: voicemail.retention: \"shred\": use \"archive\"",
        "shop.toml:18: voicemail.retention: needs retention_days",
        "shop.toml:19: voicemail.lines.kitchen: no line \"kitchen\" in [numbers]",
        "shop.toml:26: notify.smtp.password: never write the password in the config",
        "shop.toml:27: notify.smtp.password_env: environment variable DENWA_TEST_SMTP_SURELY_UNSET is not set",
        "shop.toml:32: notify.channel[1].too: unknown key for a email channel (it takes to)",
        "shop.toml:37: notify.channel.mail2.lines: no line \"0509999999\" in [numbers]",
        "shop.toml:41: notify.channel.chat.url: must start with https://",
        "shop.toml:43: notify.channel[4].name: another channel is already named \"chat\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn an_email_channel_needs_smtp() {
    let e = check(&format!(
        "{LINES}[notify]\n[[notify.channel]]\nname = \"owner\"\ntype = \"email\"\nto = [\"o@shop.example\"]\n"
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("shop.toml:16: notify.smtp: an email channel is enabled but there is no [notify.smtp]"),
        "{e}"
    );
}

#[test]
fn the_cli_reads_dir_zone_and_lines_without_secrets() {
    let dir = crate::records::test_dir("config-vm-lookup");
    let path = dir.join("shop.toml");
    std::fs::write(
        &path,
        "[shop]\ntimezone = \"Asia/Tokyo\"\n[voicemail]\ndir = \"../vm\"\n\
[notify.smtp]\npassword_env = \"DENWA_TEST_SMTP_SURELY_UNSET\"\n\
[numbers.public]\nnumber = \"0501110001\"\n",
    )
    .unwrap();
    let lookup = voicemail_of(&path).unwrap();
    assert_eq!(lookup.dir, dir.join("../vm"));
    assert_eq!(lookup.zone, jiff::tz::TimeZone::get("Asia/Tokyo").unwrap());
    assert_eq!(lookup.line_name("0501110001").as_deref(), Some("public"));
    assert_eq!(lookup.line_name("public").as_deref(), Some("public"));
    assert_eq!(lookup.line_name("kitchen"), None);
    assert!(
        voicemail_of(&dir.join("missing.toml"))
            .unwrap_err()
            .contains("no such file")
    );
}

#[test]
fn the_example_config_keeps_voicemail_and_has_email_ready_but_off() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shop.toml");
    let c = crate::config::load(&path).unwrap();
    let vm = &c.settings.voicemail;
    assert_eq!(vm.dir, path.parent().unwrap().join("../var/voicemail"));
    assert_eq!(
        vm.limits,
        BoxLimits {
            max_messages: Some(50),
            max_bytes: Some(100 * MEGABYTE)
        }
    );
    assert_eq!(
        vm.retention,
        Some(Retention {
            days: 90,
            action: RetentionAction::Archive
        })
    );
    let n = &c.settings.notify;
    assert!(n.channels.is_empty(), "email is off in the example");
    let smtp = n.smtp.as_ref().expect("SMTP is filled in, ready to switch on");
    assert_eq!(smtp.password, None, "not read while email is off");
    assert_eq!(n.time_zone.as_deref(), Some("Asia/Tokyo"));
}
