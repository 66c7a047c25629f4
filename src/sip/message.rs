//! Our thin message layer over rsip.
//!
//! rsip parses the start line and URIs, but it rejects or mis-files several
//! things real peers send (compact header names, folded lines, `Via : x`,
//! comma-joined Via values, unknown methods). So every datagram first goes
//! through [`normalise`], which rewrites the header block into the plain form
//! rsip understands and keeps the header values verbatim for us: responses
//! copy Via/From/To/Call-ID/CSeq byte for byte from the request, as RFC 3261
//! §8.2.6.2 asks, instead of re-serialising rsip's typed headers.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// SIP methods we know by name; anything else is `Other` and gets 405.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header names in their canonical long form, so lookups are simple string
/// comparisons (case-insensitive, as RFC 3261 §7.3.1 wants).
fn canonical_name(name: &str) -> &str {
    if name.len() == 1 {
        return match name.as_bytes()[0].to_ascii_lowercase() {
            b'v' => "Via",
            b'i' => "Call-ID",
            b'f' => "From",
            b't' => "To",
            b'm' => "Contact",
            b'l' => "Content-Length",
            b'c' => "Content-Type",
            b'k' => "Supported",
            b's' => "Subject",
            b'e' => "Content-Encoding",
            b'o' => "Event",
            b'r' => "Refer-To",
            b'u' => "Allow-Events",
            b'x' => "Session-Expires",
            _ => name,
        };
    }
    name
}

/// Why a datagram could not be turned into a message at all (it is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable(pub String);

impl std::fmt::Display for Unparseable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { code: u16, reason: String },
}

/// A SIP message after normalisation: start line, headers in order with
/// canonical names and verbatim values, and the body.
#[derive(Debug, Clone)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A request in a SIP version other than 2.0: answered 505 (RFC 3261 §21.5.6).
    pub unsupported_version: bool,
}

impl Message {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Serialise back to wire form (used to hand the normalised text to rsip).
    fn to_wire(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Split a header value on commas that are outside quotes and angle brackets
/// (RFC 3261 §7.3.1 lets Via and friends be comma-joined).
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth <= 0 => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Turn a datagram into a [`Message`]: unfold continuation lines, expand
/// compact names, drop whitespace before colons, split comma-joined Via, and
/// apply Content-Length to the body. Only fails when there is no recognisable
/// SIP start line or header block.
pub fn normalise(data: &[u8]) -> Result<Message, Unparseable> {
    // Tolerate leading CRLFs (RFC 3261 §7.5) and bare-LF line endings.
    let data = trim_leading_newlines(data);
    let (head, body) = split_head_body(data)?;
    let head = std::str::from_utf8(head).map_err(|_| Unparseable("header block is not UTF-8".into()))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or_default();
    let (start, unsupported_version) = parse_start_line(start_line)?;

    let mut headers: Vec<(String, String)> = Vec::with_capacity(16);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let (_, value) = headers
                .last_mut()
                .ok_or_else(|| Unparseable("continuation line before any header".into()))?;
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(line.trim());
            continue;
        }
        let colon = line
            .find(':')
            .ok_or_else(|| Unparseable(format!("header line without colon: {:?}", truncate(line))))?;
        let name = line[..colon].trim();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(Unparseable(format!("bad header name: {:?}", truncate(name))));
        }
        let name = canonical_name(name).to_string();
        headers.push((name, line[colon + 1..].trim().to_string()));
    }

    // RFC 3261 allows whitespace (even folded lines) around the slashes of a
    // Via's sent-protocol (RFC 4475 §3.1.1.1): close it up before anyone reads it.
    for (n, v) in headers.iter_mut() {
        if n == "Via" {
            *v = tidy_via(v);
        }
    }

    // Split comma-joined Via values into one header each; responses must
    // mirror every Via, and the top one decides where the response goes.
    if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Via") && v.contains(','))
    {
        let mut split = Vec::with_capacity(headers.len() + 2);
        for (n, v) in headers {
            if n.eq_ignore_ascii_case("Via") {
                for part in split_list(&v) {
                    split.push(("Via".to_string(), part.to_string()));
                }
            } else {
                split.push((n, v));
            }
        }
        headers = split;
    }

    let mut message = Message {
        start,
        headers,
        body: body.to_vec(),
        unsupported_version,
    };
    if let Some(len) = message.header("Content-Length") {
        // A datagram longer than Content-Length carries junk after the body
        // (RFC 3261 §18.3): drop it. A shorter one is checked by `validate`.
        if let Ok(len) = len.trim().parse::<usize>()
            && len < message.body.len()
        {
            message.body.truncate(len);
        }
    }
    Ok(message)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn truncate(s: &str) -> &str {
    let end = s.char_indices().nth(60).map(|(i, _)| i).unwrap_or(s.len());
    &s[..end]
}

fn trim_leading_newlines(mut data: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = data {
        data = rest;
    }
    data
}

fn split_head_body(data: &[u8]) -> Result<(&[u8], &[u8]), Unparseable> {
    if let Some(i) = find(data, b"\r\n\r\n") {
        return Ok((&data[..i], &data[i + 4..]));
    }
    if let Some(i) = find(data, b"\n\n") {
        return Ok((&data[..i], &data[i + 2..]));
    }
    Err(Unparseable("no end of header block".into()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `SIP / 2.0 / UDP  host;branch=x` → `SIP/2.0/UDP host;branch=x`, for each
/// comma-separated value.
fn tidy_via(value: &str) -> String {
    if !value.contains('/') || value.starts_with("SIP/2.0/") && !value.contains(", ") && !value.contains(" ,") {
        return value.to_string();
    }
    split_list(value)
        .into_iter()
        .map(|part| {
            let mut pieces = part.splitn(3, '/');
            let (Some(name), Some(version), Some(rest)) = (pieces.next(), pieces.next(), pieces.next()) else {
                return part.to_string();
            };
            let rest = rest.trim_start();
            let transport_end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            let (transport, sent_by) = rest.split_at(transport_end);
            format!("{}/{}/{} {}", name.trim(), version.trim(), transport, sent_by.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_start_line(line: &str) -> Result<(StartLine, bool), Unparseable> {
    let bad = || Unparseable(format!("bad start line: {:?}", truncate(line)));
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..700).contains(&code) {
            return Err(bad());
        }
        return Ok((
            StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            false,
        ));
    }
    let mut parts = line.split(' ');
    let (method, uri, version) = (parts.next(), parts.next(), parts.next());
    match (method, uri, version, parts.next()) {
        (Some(m), Some(u), Some(version), None)
            if !m.is_empty() && m.bytes().all(is_token_char) && !u.is_empty() && is_sip_version(version) =>
        {
            Ok((
                StartLine::Request {
                    method: Method::parse(m),
                    uri: u.to_string(),
                },
                version != "SIP/2.0",
            ))
        }
        _ => Err(bad()),
    }
}

/// The usual reason phrase for a status we send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        _ => match status / 100 {
            4 => "Request Failure",
            5 => "Server Failure",
            6 => "Global Failure",
            _ => "Unknown",
        },
    }
}

/// `SIP/<digits>.<digits>`: a version we can at least answer 505 to.
fn is_sip_version(v: &str) -> bool {
    v.strip_prefix("SIP/")
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

/// A request we will act on: the essentials pulled out and checked once.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    /// The user part of the Request-URI, if any (the dialled number).
    pub uri_user: Option<String>,
    pub msg: Message,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    /// Branch of the top Via; empty for RFC 2543 peers without one.
    pub branch: String,
    pub source: SocketAddr,
}

/// A response to one of our requests.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub msg: Message,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    pub branch: String,
    pub to_tag: Option<String>,
}

/// What became of one datagram.
#[derive(Debug)]
pub enum Incoming {
    Request(Box<Request>),
    Response(Box<Response>),
    /// Parsed far enough to answer, but invalid: answer with this status.
    Invalid {
        msg: Box<Message>,
        status: u16,
        reason: String,
    },
}

/// Parse one datagram. `Err` means drop it (nothing sensible to answer).
pub fn parse(data: &[u8], source: SocketAddr) -> Result<Incoming, Unparseable> {
    let msg = normalise(data)?;
    match validate(&msg) {
        Ok(()) => {}
        Err((status, reason)) => {
            return match msg.start {
                StartLine::Request { ref method, .. } if *method != Method::Ack && can_answer(&msg) => {
                    Ok(Incoming::Invalid {
                        msg: Box::new(msg),
                        status,
                        reason,
                    })
                }
                _ => Err(Unparseable(reason)),
            };
        }
    }
    let call_id = msg.header("Call-ID").unwrap_or_default().to_string();
    let (cseq, cseq_method) = parse_cseq(msg.header("CSeq").unwrap_or_default()).expect("validated");
    let top_via = msg.header("Via").unwrap_or_default();
    let branch = param(top_via, "branch").unwrap_or_default().to_string();
    let to_tag = msg
        .header("To")
        .and_then(|v| param(after_uri(v), "tag"))
        .map(str::to_string);
    match msg.start.clone() {
        StartLine::Request { method, uri } => {
            // rsip checks the URI grammar for us; unknown methods were already
            // answered by `validate` semantics above (they parse as Other).
            let uri_user = match rsip::Uri::try_from(uri.as_str()) {
                Ok(u) => u.user().map(unescape_user),
                Err(_) => {
                    return if method == Method::Ack {
                        Err(Unparseable("ACK with bad Request-URI".into()))
                    } else {
                        Ok(Incoming::Invalid {
                            msg: Box::new(msg),
                            status: 400,
                            reason: "bad Request-URI".into(),
                        })
                    };
                }
            };
            let from_tag = msg
                .header("From")
                .and_then(|v| param(after_uri(v), "tag"))
                .map(str::to_string);
            Ok(Incoming::Request(Box::new(Request {
                method,
                uri,
                uri_user,
                call_id,
                cseq,
                cseq_method,
                from_tag,
                to_tag,
                branch,
                source,
                msg,
            })))
        }
        StartLine::Response { code, .. } => Ok(Incoming::Response(Box::new(Response {
            code,
            call_id,
            cseq,
            cseq_method,
            branch,
            to_tag,
            msg,
        }))),
    }
}

/// A response can find its way back only along a Via.
fn can_answer(msg: &Message) -> bool {
    msg.headers_named("Via").any(|v| v.starts_with("SIP/2.0/"))
}

/// RFC 3261 §8.2 / §18.3 checks that make a request answerable with 400.
fn validate(msg: &Message) -> Result<(), (u16, String)> {
    if msg.unsupported_version {
        return Err((505, "only SIP/2.0 is supported".into()));
    }
    check_headers(msg).map_err(|reason| (400, reason))
}

fn check_headers(msg: &Message) -> Result<(), String> {
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        match msg.header(h) {
            None => return Err(format!("missing {h} header")),
            Some("") => return Err(format!("empty {h} header")),
            Some(_) => {}
        }
    }
    // Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.1.2.19).
    for h in [
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
    ] {
        if msg.headers_named(h).nth(1).is_some() {
            return Err(format!("more than one {h} header"));
        }
    }
    let (_, cseq_method) = parse_cseq(msg.header("CSeq").unwrap_or_default()).ok_or("malformed CSeq")?;
    if let StartLine::Request { method, .. } = &msg.start
        && *method != cseq_method
    {
        return Err("CSeq method does not match the request method".into());
    }
    if let Some(len) = msg.header("Content-Length") {
        let len: usize = len.trim().parse().map_err(|_| "malformed Content-Length")?;
        if len > msg.body.len() {
            return Err("Content-Length larger than the body received".into());
        }
    }
    if msg.headers_named("Via").any(|v| !v.starts_with("SIP/2.0/")) {
        return Err("malformed Via".into());
    }
    // Finally let rsip check the whole message grammar (request line, URIs)
    // for methods it knows; unknown methods are fine for a 405.
    if !matches!(
        msg.start,
        StartLine::Request {
            method: Method::Other(_),
            ..
        }
    ) && let Err(e) = rsip::SipMessage::try_from(msg.to_wire().as_slice())
    {
        return Err(format!("unparseable message: {}", truncate(&e.to_string())));
    }
    Ok(())
}

fn parse_cseq(v: &str) -> Option<(u32, Method)> {
    let mut it = v.split_ascii_whitespace();
    let n = it.next()?.parse::<u32>().ok()?;
    let m = it.next()?;
    if it.next().is_some() || !m.bytes().all(is_token_char) {
        return None;
    }
    Some((n, Method::parse(m)))
}

/// The part of a From/To/Contact value after the URI, where header params live.
fn after_uri(v: &str) -> &str {
    match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    }
}

/// Value of `;name=value` in a parameter list (case-insensitive name).
pub fn param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    v.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| val.trim())
    })
}

/// Does the parameter list contain `;name` (with or without a value)?
pub fn has_param(v: &str, name: &str) -> bool {
    v.split(';').skip(1).any(|p| {
        let k = p.split_once('=').map(|(k, _)| k).unwrap_or(p);
        k.trim().eq_ignore_ascii_case(name)
    })
}

fn unescape_user(u: &str) -> String {
    let mut out = Vec::with_capacity(u.len());
    let b = u.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Work on bytes: a multi-byte character after '%' must not split a str.
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URI inside a name-addr (`"Name" <sip:x@y>;tag=1`) or addr-spec value.
pub fn uri_of(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

/// The quoted or token display name of a From/To value, if any.
pub fn display_name(v: &str) -> Option<String> {
    let lt = v.find('<')?;
    let name = v[..lt].trim();
    let name = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name);
    (!name.is_empty()).then(|| name.replace("\\\"", "\""))
}

/// The user part of a SIP URI (`sip:user@host` → `user`).
pub fn uri_user(uri: &str) -> Option<String> {
    let rest = uri.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(':').next().unwrap_or(user);
    Some(unescape_user(user))
}

/// Builds responses from a request, copying what RFC 3261 §8.2.6.2 says to copy.
pub struct ResponseBuilder {
    out: String,
    body: Vec<u8>,
}

impl ResponseBuilder {
    /// Start a response to `req` (Via with received/rport, From, To with our
    /// tag if given, Call-ID, CSeq).
    pub fn new(msg: &Message, source: SocketAddr, code: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut out = String::with_capacity(640);
        let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
        for (i, via) in msg.headers_named("Via").enumerate() {
            if i == 0 {
                out.push_str("Via: ");
                out.push_str(&stamp_via(via, source));
                out.push_str("\r\n");
            } else {
                let _ = write!(out, "Via: {via}\r\n");
            }
        }
        // Absent headers stay absent (only in a 400 for a request missing them).
        if let Some(from) = msg.header("From") {
            let _ = write!(out, "From: {from}\r\n");
        }
        match (msg.header("To"), to_tag) {
            (Some(to), Some(tag)) if param(after_uri(to), "tag").is_none() => {
                let _ = write!(out, "To: {to};tag={tag}\r\n");
            }
            (Some(to), _) => {
                let _ = write!(out, "To: {to}\r\n");
            }
            (None, _) => {}
        }
        for name in ["Call-ID", "CSeq"] {
            if let Some(v) = msg.header(name) {
                let _ = write!(out, "{name}: {v}\r\n");
            }
        }
        // A response that creates or refreshes a dialog carries the route
        // set back to the caller (RFC 3261 §12.1.1), so its in-dialog
        // requests pass the same proxies.
        let is_invite = matches!(
            msg.start,
            StartLine::Request {
                method: Method::Invite,
                ..
            }
        );
        if is_invite && (101..300).contains(&code) {
            for rr in msg.headers_named("Record-Route") {
                let _ = write!(out, "Record-Route: {rr}\r\n");
            }
        }
        ResponseBuilder { out, body: Vec::new() }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        let _ = write!(self.out, "Content-Type: {content_type}\r\n");
        self.body = body;
        self
    }

    pub fn build(mut self) -> Vec<u8> {
        let _ = write!(self.out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = self.out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Add `received` and fill `rport` in the top Via (RFC 3261 §18.2.1, RFC 3581 §4),
/// so the response and any retransmission return to the packet's real source.
pub fn stamp_via(via: &str, source: SocketAddr) -> String {
    let mut out = String::with_capacity(via.len() + 40);
    for (i, part) in via.split(';').enumerate() {
        let key = part.split('=').next().unwrap_or("").trim();
        if i > 0 && (key.eq_ignore_ascii_case("received") || key.eq_ignore_ascii_case("rport")) {
            continue;
        }
        if i > 0 {
            out.push(';');
        }
        out.push_str(part.trim());
    }
    let _ = write!(out, ";received={}", source.ip());
    if has_param(via, "rport") {
        let _ = write!(out, ";rport={}", source.port());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    const INVITE: &str = "INVITE sip:public@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Courier\" <sip:0901234567@127.0.0.1:5070>;tag=abc\r\n\
To: <sip:public@127.0.0.1:5060>\r\n\
Call-ID: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:5070>\r\n\
Content-Length: 0\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes(), src()).unwrap() {
            Incoming::Request(r) => *r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn parses_plain_invite() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri_user.as_deref(), Some("public"));
        assert_eq!(r.call_id, "call-1@127.0.0.1");
        assert_eq!((r.cseq, r.cseq_method.clone()), (1, Method::Invite));
        assert_eq!(r.branch, "z9hG4bK-1");
        assert_eq!(r.from_tag.as_deref(), Some("abc"));
        assert_eq!(r.to_tag, None);
    }

    #[test]
    fn compact_names_are_expanded() {
        let text = "OPTIONS sip:public@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-2\r\n\
f: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:public@127.0.0.1>\r\ni: cid\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n";
        let r = request(text);
        assert_eq!(r.call_id, "cid");
        assert_eq!(r.branch, "z9hG4bK-2");
        assert_eq!(r.msg.header("content-length"), Some("0"));
    }

    #[test]
    fn folded_lines_and_space_before_colon() {
        let text = "OPTIONS sip:public@127.0.0.1 SIP/2.0\r\n\
Via : SIP/2.0/UDP 127.0.0.1:5070\r\n ;branch=z9hG4bK-3\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo:\r\n\t<sip:public@127.0.0.1>\r\nCall-ID: cid\r\nCSeq: 2 OPTIONS\r\n\r\n";
        let r = request(text);
        assert_eq!(r.branch, "z9hG4bK-3");
        assert_eq!(r.msg.header("To"), Some("<sip:public@127.0.0.1>"));
    }

    #[test]
    fn comma_joined_via_is_split_and_mirrored() {
        let text = "OPTIONS sip:public@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-top, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:public@127.0.0.1>\r\nCall-ID: cid\r\nCSeq: 2 OPTIONS\r\n\r\n";
        let r = request(text);
        assert_eq!(r.branch, "z9hG4bK-top");
        assert_eq!(r.msg.headers_named("Via").count(), 2);
        let resp = String::from_utf8(ResponseBuilder::new(&r.msg, src(), 200, "OK", Some("t")).build()).unwrap();
        assert_eq!(resp.matches("Via: ").count(), 2);
        assert!(resp.contains("To: <sip:public@127.0.0.1>;tag=t\r\n"));
    }

    #[test]
    fn dialog_creating_responses_carry_record_route() {
        let text = INVITE.replace(
            "Contact:",
            "Record-Route: <sip:127.0.0.1:5070;lr;ftag=abc>\r\nRecord-Route: <sip:127.0.0.2;lr>\r\nContact:",
        );
        let r = request(&text);
        let ok = String::from_utf8(ResponseBuilder::new(&r.msg, src(), 200, "OK", Some("t")).build()).unwrap();
        assert!(ok.contains("Record-Route: <sip:127.0.0.1:5070;lr;ftag=abc>\r\nRecord-Route: <sip:127.0.0.2;lr>\r\n"));
        let busy = String::from_utf8(ResponseBuilder::new(&r.msg, src(), 486, "Busy Here", Some("t")).build()).unwrap();
        assert!(!busy.contains("Record-Route"));
    }

    #[test]
    fn unknown_method_parses_as_other() {
        let text = INVITE.replace("INVITE", "FROBNICATE");
        let r = request(&text);
        assert_eq!(r.method, Method::Other("FROBNICATE".into()));
    }

    #[test]
    fn missing_call_id_is_400() {
        let text = INVITE.replace("Call-ID: call-1@127.0.0.1\r\n", "");
        match parse(text.as_bytes(), src()) {
            Ok(Incoming::Invalid { msg, status, reason }) => {
                assert_eq!(status, 400);
                assert!(reason.contains("Call-ID"), "{reason}");
                assert!(msg.header("Via").is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cseq_mismatch_and_bad_length_are_400() {
        for text in [
            INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            INVITE.replace("Content-Length: 0", "Content-Length: 50"),
            INVITE.replace("Content-Length: 0", "Content-Length: x"),
            INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE"),
        ] {
            assert!(
                matches!(parse(text.as_bytes(), src()), Ok(Incoming::Invalid { status: 400, .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn folded_whitespace_in_via_is_understood() {
        // RFC 4475 §3.1.1.1 ("wsinv"): LWS, even a folded line, around the slashes.
        let text = INVITE.replacen(
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
            "Via  : SIP  /   2.0\r\n /UDP\r\n    127.0.0.1:5070;branch=z9hG4bK-1",
            1,
        );
        assert_ne!(text, INVITE, "the fixture's Via changed");
        let req = request(&text);
        assert_eq!(req.branch, "z9hG4bK-1");
        assert!(
            req.msg
                .header("Via")
                .unwrap()
                .starts_with("SIP/2.0/UDP 127.0.0.1:5070;")
        );
    }

    #[test]
    fn duplicated_single_headers_are_400() {
        // RFC 4475 §3.1.2.19: one value only for these.
        for dup in [
            "Call-ID: other@x\r\n",
            "CSeq: 2 INVITE\r\n",
            "From: <sip:b@x>;tag=2\r\n",
            "To: <sip:c@x>\r\n",
            "Content-Length: 4\r\n",
        ] {
            let text = INVITE.replacen("Max-Forwards", &format!("{dup}Max-Forwards"), 1);
            assert!(
                matches!(parse(text.as_bytes(), src()), Ok(Incoming::Invalid { status: 400, .. })),
                "{dup}"
            );
        }
    }

    #[test]
    fn other_sip_versions_get_505() {
        let text = INVITE.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
        assert!(matches!(
            parse(text.as_bytes(), src()),
            Ok(Incoming::Invalid { status: 505, .. })
        ));
        let garbage = INVITE.replacen("SIP/2.0\r\n", "SIP/x\r\n", 1);
        assert!(parse(garbage.as_bytes(), src()).is_err());
    }

    #[test]
    fn garbage_is_unparseable() {
        for junk in [
            &b"\x00\x01\x02hello"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
            b"\r\n\r\n",
        ] {
            assert!(parse(junk, src()).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn body_is_cut_to_content_length() {
        let text = INVITE.replace("Content-Length: 0", "Content-Length: 3") + "abcdef";
        let r = request(&text);
        assert_eq!(r.msg.body, b"abc");
    }

    #[test]
    fn via_gets_received_and_rport() {
        let s: SocketAddr = "127.0.0.2:6000".parse().unwrap();
        assert_eq!(
            stamp_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport", s),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;received=127.0.0.2;rport=6000"
        );
        assert_eq!(
            stamp_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1", s),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;received=127.0.0.2"
        );
    }

    #[test]
    fn helpers_read_name_addr() {
        let v = "\"Ms \\\"Q\\\"\" <sip:0901%32@example.com;user=phone>;tag=9";
        assert_eq!(uri_of(v), "sip:0901%32@example.com;user=phone");
        assert_eq!(uri_user(uri_of(v)).as_deref(), Some("09012"));
        assert_eq!(display_name(v).as_deref(), Some("Ms \"Q\""));
        // A multi-byte character right after '%' is kept, not split.
        assert_eq!(uri_user("sip:%aé%41@x").as_deref(), Some("%aéA"));
        assert_eq!(param(after_uri(v), "tag"), Some("9"));
    }
}
