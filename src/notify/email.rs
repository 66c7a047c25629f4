//! Email with the recording attached, over SMTP (lettre's blocking
//! transport, rustls: no OpenSSL needed).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};

use super::alert::AlertNotice;
use super::{Attempt, Notice, SmtpConfig, SmtpSecurity};

/// Subject line: `Voicemail on <line> from <caller> at <local time>`.
pub fn subject(notice: &Notice) -> String {
    format!(
        "Voicemail on {} from {} at {}",
        notice.message.line,
        notice.caller_display(),
        notice.local_time
    )
}

/// The plain-text body; `attached` says whether the recording is attached.
pub fn body(notice: &Notice, attached: bool) -> String {
    let m = &notice.message;
    let secs = m.duration_ms.div_ceil(1000);
    let mut text = format!(
        "New voicemail on {line}.\n\n\
         From:     {caller}\n\
         Received: {time}\n\
         Length:   {min}:{sec:02}\n\
         Id:       {id}\n",
        line = m.line,
        caller = notice.caller_display(),
        time = notice.local_time,
        min = secs / 60,
        sec = secs % 60,
        id = m.id,
    );
    if m.recovered {
        text.push_str("\nThis recording was recovered after denwa stopped unexpectedly; its end may be cut.\n");
    }
    text.push_str(if attached {
        "\nThe recording is attached."
    } else {
        "\nThe recording is too large to attach."
    });
    text.push_str(" On the server: denwa voicemail play ");
    text.push_str(&m.id);
    text.push('\n');
    text
}

/// A message builder with sender, recipients and subject.
fn addressed(smtp: &SmtpConfig, to: &[String], subject: String) -> Result<lettre::message::MessageBuilder, String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("[notify.smtp] from = {:?} is not an address: {e}", smtp.from))?;
    let mut builder = lettre::Message::builder().from(from).subject(subject);
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| format!("recipient {address:?} is not an address: {e}"))?;
        builder = builder.to(mailbox);
    }
    Ok(builder)
}

/// Builds the email: text body plus the WAV (read from `notice.file`).
pub fn build(notice: &Notice, smtp: &SmtpConfig, to: &[String]) -> Result<lettre::Message, String> {
    let builder = addressed(smtp, to, subject(notice))?;
    let size = std::fs::metadata(&notice.file)
        .map_err(|e| format!("cannot read the recording {}: {e}", notice.file.display()))?
        .len();
    let text = SinglePart::plain(body(notice, size <= smtp.max_attachment_bytes));
    if size > smtp.max_attachment_bytes {
        return builder
            .singlepart(text)
            .map_err(|e| format!("cannot build the email: {e}"));
    }
    let audio =
        std::fs::read(&notice.file).map_err(|e| format!("cannot read the recording {}: {e}", notice.file.display()))?;
    let wav = ContentType::parse("audio/wav").expect("a valid MIME type");
    let attachment = Attachment::new(format!("{}.wav", notice.message.id)).body(audio, wav);
    builder
        .multipart(MultiPart::mixed().singlepart(text).singlepart(attachment))
        .map_err(|e| format!("cannot build the email: {e}"))
}

fn transport(smtp: &SmtpConfig) -> Result<SmtpTransport, String> {
    let builder = match smtp.security {
        SmtpSecurity::Tls => SmtpTransport::relay(&smtp.host),
        SmtpSecurity::Starttls => SmtpTransport::starttls_relay(&smtp.host),
        SmtpSecurity::Plain => Ok(SmtpTransport::builder_dangerous(&smtp.host)),
    }
    .map_err(|e| format!("SMTP {}: {e}", smtp.host))?;
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)))
        .hello_name(ClientId::Domain(
            smtp.hello_name.clone().unwrap_or_else(|| "localhost".into()),
        ));
    if let Some(username) = &smtp.username {
        let password = smtp.password.as_ref().map_or("", |p| p.expose());
        builder = builder.credentials(Credentials::new(username.clone(), password.to_string()));
    }
    Ok(builder.build())
}

/// Sends the notice by email to `to`.
pub fn deliver(notice: &Notice, smtp: Option<&SmtpConfig>, to: &[String]) -> Attempt {
    let Some(smtp) = smtp else {
        return Attempt::Permanent("email channel but no [notify.smtp] configured".into());
    };
    match build(notice, smtp, to) {
        Ok(email) => send(smtp, &email),
        Err(e) => Attempt::Permanent(e),
    }
}

/// The email for an alert: text only.
pub fn build_alert(notice: &AlertNotice, smtp: &SmtpConfig, to: &[String]) -> Result<lettre::Message, String> {
    addressed(smtp, to, notice.subject())?
        .singlepart(SinglePart::plain(notice.body()))
        .map_err(|e| format!("cannot build the email: {e}"))
}

/// Sends an alert by email to `to`.
pub fn deliver_alert(notice: &AlertNotice, smtp: Option<&SmtpConfig>, to: &[String]) -> Attempt {
    let Some(smtp) = smtp else {
        return Attempt::Permanent("email channel but no [notify.smtp] configured".into());
    };
    match build_alert(notice, smtp, to) {
        Ok(email) => send(smtp, &email),
        Err(e) => Attempt::Permanent(e),
    }
}

fn send(smtp: &SmtpConfig, email: &lettre::Message) -> Attempt {
    let result = transport(smtp).and_then(|t| {
        t.send(email)
            .map(|_| ())
            .map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
    });
    match result {
        Ok(()) => Attempt::Delivered,
        Err(e) => Attempt::Failed(e),
    }
}
