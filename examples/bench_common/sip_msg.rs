//! SIP message parsing and building for the benchmarks' own user agents:
//! enough of SIP for what denwa sends them.

// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;

/// A parsed SIP message (enough of one for what denwa sends).
pub struct Msg<'a> {
    first: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    pub body: &'a str,
}

fn full_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        _ => name,
    }
}

impl<'a> Msg<'a> {
    pub fn parse(text: &'a str) -> Option<Msg<'a>> {
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let first = lines.next()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (full_name(n.trim()), v.trim()))
            .collect();
        Some(Msg { first, headers, body })
    }

    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn status(&self) -> Option<u16> {
        self.first.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    pub fn method(&self) -> &'a str {
        self.first.split(' ').next().unwrap_or("")
    }

    pub fn cseq_method(&self) -> &'a str {
        self.header("CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }

    pub fn call_id(&self) -> &'a str {
        self.header("Call-ID").unwrap_or("")
    }

    /// A response to this request, with its Vias, From, To (tagged), Call-ID, CSeq.
    pub fn reply(&self, status: &str, to_tag: Option<&str>, extra: &str, body: &str) -> String {
        let mut out = format!("SIP/2.0 {status}\r\n");
        for via in self.all("Via") {
            let _ = write!(out, "Via: {via}\r\n");
        }
        let to = self.header("To").unwrap_or("");
        let _ = write!(out, "From: {}\r\nTo: {to}", self.header("From").unwrap_or(""));
        if let (Some(tag), None) = (to_tag, param(to, "tag")) {
            let _ = write!(out, ";tag={tag}");
        }
        let _ = write!(
            out,
            "\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            self.call_id(),
            self.header("CSeq").unwrap_or(""),
            body.len()
        );
        out
    }
}

pub fn param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let after = header.rsplit_once('>').map_or(header, |(_, p)| p);
    after
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

pub fn uri_of(header: &str) -> &str {
    header
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map_or(header, |(u, _)| u)
}

/// The audio address of an SDP body.
pub fn sdp_audio(body: &str) -> Option<SocketAddr> {
    let ip = body.lines().find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?;
    let port = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split(' ')
        .next()?;
    format!("{}:{}", ip.trim(), port).parse().ok()
}

/// A caller's request inside its dialog (ACK for a 2xx, BYE); `branch`
/// names the transaction (a non-2xx's ACK takes the INVITE's).
pub struct Dialog<'a> {
    pub target: &'a str,
    pub local: SocketAddr,
    pub user: &'a str,
    pub to_header: &'a str,
    pub call_id: &'a str,
}

impl Dialog<'_> {
    pub fn request(&self, method: &str, cseq: u32, branch: &str) -> String {
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n\
From: <sip:{user}@{local}>;tag=t{user}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            self.target,
            self.to_header,
            self.call_id,
            local = self.local,
            user = self.user,
        )
    }
}
