//! What the owner is told: a plain SMTP server and a webhook receiver on loopback.

use super::*;

/// A plain SMTP server on loopback (EHLO, MAIL, RCPT, DATA, QUIT; no TLS,
/// no AUTH) that keeps each message's DATA. Dropping it stops listening.
pub struct SmtpServer {
    pub port: u16,
    pub mails: std::sync::mpsc::Receiver<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SmtpServer {
    /// Listens on `port` (0: any free port).
    pub fn start(port: u16) -> SmtpServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (tx, mails) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let tx = tx.clone();
                        std::thread::spawn(move || {
                            let _ = smtp_session(stream, &tx);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SmtpServer {
            port,
            mails,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn smtp_session(stream: std::net::TcpStream, tx: &std::sync::mpsc::Sender<String>) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut out = stream.try_clone()?;
    let mut reader = std::io::BufReader::new(stream);
    out.write_all(b"220 test.local ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
            "EHLO" => out.write_all(b"250-test.local\r\n250 8BITMIME\r\n")?,
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => out.write_all(b"250 OK\r\n")?,
            "DATA" => {
                out.write_all(b"354 go on\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line == ".\r\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 §4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                out.write_all(b"250 queued\r\n")?;
                let _ = tx.send(data);
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"502 not implemented\r\n")?,
        }
    }
}

/// A mail as the SMTP server kept it: unfolded headers and its MIME parts.
pub struct Mail {
    pub headers: String,
    /// Each part's headers (lowercased) and body.
    pub parts: Vec<(String, String)>,
}

impl Mail {
    pub fn parse(data: &str) -> Mail {
        let (head, body) = data.split_once("\r\n\r\n").unwrap_or((data, ""));
        let headers = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        let boundary = headers.split("boundary=").nth(1).map(|b| {
            b.trim_start_matches('"')
                .split(['"', ';', '\r'])
                .next()
                .unwrap()
                .to_string()
        });
        let parts = match boundary {
            Some(b) => body
                .split(&format!("--{b}"))
                .skip(1)
                .filter(|p| !p.starts_with("--"))
                .map(|p| {
                    let (h, b) = p.trim_start_matches("\r\n").split_once("\r\n\r\n").unwrap_or((p, ""));
                    (h.replace("\r\n ", " ").to_ascii_lowercase(), b.to_string())
                })
                .collect(),
            None => vec![(String::new(), body.to_string())],
        };
        Mail { headers, parts }
    }

    /// A header's value, e.g. `Subject`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The decoded body of the first base64 part whose headers contain `content_type`.
    pub fn attachment(&self, content_type: &str) -> Option<Vec<u8>> {
        let (_, body) = self
            .parts
            .iter()
            .find(|(h, _)| h.contains(content_type) && h.contains("base64"))?;
        Some(base64_decode(body))
    }
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, &s| (acc << 6) | u32::from(s)) << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// An HTTP/1.1 listener on loopback answering every request with 200 and
/// passing on each request's head and body.
pub fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut reader = std::io::BufReader::new(stream.try_clone()?);
                let mut out = stream;
                loop {
                    let (mut head, mut length) = (String::new(), 0);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line)? == 0 {
                            return Ok(());
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body)?;
                    out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
                    let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
                }
            });
        }
    });
    (port, rx)
}
