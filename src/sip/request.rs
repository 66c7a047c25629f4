//! The one request builder: every request denwa sends is formed here, out of
//! dialog (INVITE, REGISTER, OPTIONS), inside a [`Dialog`] (BYE, re-INVITE,
//! UPDATE, the ACK for a 2xx), or derived from a sent INVITE (its CANCEL and
//! the ACK for a non-2xx final response, which the transaction sends).
//! Routing follows RFC 3261 §12.2.1.1 for loose and strict first hops.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::dialog::{Dialog, with_tag};
use super::message::{self, Message, Method};
use super::transaction::Wire;

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub wire: Wire,
    pub method: Method,
    /// The top Via branch: with the CSeq method, the client transaction's key.
    pub branch: String,
    pub call_id: String,
    pub cseq: u32,
    /// The URI whose host and port the request goes to (§8.1.2): the first
    /// Route when the first hop loose-routes, else the Request-URI.
    pub next_hop: String,
}

impl OutgoingRequest {
    /// The next hop as a socket address, when it names an IP literal.
    pub fn destination(&self) -> Option<SocketAddr> {
        uri_destination(&self.next_hop)
    }
}

/// Where a SIP URI points, for IP literals only (no DNS here, RFC 3263 is
/// the caller's): `maddr` overrides the host (§8.1.2 / §19.1.1), the port
/// defaults to 5060 (5061 for sips). `None` for a host name.
pub fn uri_destination(uri: &str) -> Option<SocketAddr> {
    // A bare URI keeps its parameters (uri_of would read them as header ones).
    let uri = if uri.contains('<') {
        message::uri_of(uri)
    } else {
        uri.trim()
    };
    let (scheme, rest) = uri.split_once(':')?;
    let default_port = if scheme.eq_ignore_ascii_case("sips") {
        5061
    } else {
        5060
    };
    let rest = rest.split('?').next()?;
    let mut parts = rest.split(';');
    let hostport = parts.next()?;
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let maddr = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("maddr").then(|| v.trim())
    });
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        (ip, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    let ip: IpAddr = maddr.unwrap_or(host).trim_matches(['[', ']']).parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// A branch with the RFC 3261 magic cookie, from a random number.
pub fn branch_from(random: u64) -> String {
    format!("z9hG4bK{random:016x}")
}

/// Builds one request. Start with [`out_of_dialog`](Self::out_of_dialog),
/// [`in_dialog`](Self::in_dialog) or [`ack_for_2xx`](Self::ack_for_2xx),
/// add what it needs, then [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    /// Where the request is meant to end up (Request-URI before routing).
    target: String,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    route_set: Vec<String>,
    contact: Option<String>,
    extra: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl RequestBuilder {
    /// A request outside any dialog. `from` and `to` are name-addr values
    /// without tags; `from_tag` is ours (required, §8.1.1.3).
    pub fn out_of_dialog(
        method: Method,
        request_uri: &str,
        from: &str,
        from_tag: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
    ) -> Self {
        RequestBuilder {
            method,
            target: request_uri.to_string(),
            from: with_tag(from, from_tag),
            to: to.to_string(),
            call_id: call_id.to_string(),
            cseq,
            route_set: Vec::new(),
            contact: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// A new request inside `dialog` (BYE, re-INVITE, UPDATE, INFO …): takes
    /// the next local CSeq number, addresses the remote target via the route
    /// set. Not for ACK (see [`ack_for_2xx`](Self::ack_for_2xx)) or CANCEL
    /// (see [`cancel_for`]), which reuse the INVITE's number.
    pub fn in_dialog(dialog: &mut Dialog, method: Method) -> Self {
        debug_assert!(!matches!(method, Method::Ack | Method::Cancel));
        let cseq = dialog.next_local_cseq();
        Self::from_dialog(dialog, method, cseq)
    }

    /// The ACK for a 2xx to our INVITE numbered `invite_cseq` (§13.2.2.4):
    /// a transaction of its own, so it needs a new branch.
    pub fn ack_for_2xx(dialog: &Dialog, invite_cseq: u32) -> Self {
        Self::from_dialog(dialog, Method::Ack, invite_cseq)
    }

    fn from_dialog(dialog: &Dialog, method: Method, cseq: u32) -> Self {
        RequestBuilder {
            method,
            target: dialog.remote_target.clone(),
            from: dialog.local_party(),
            to: dialog.remote_party(),
            call_id: dialog.id.call_id.clone(),
            cseq,
            route_set: dialog.route_set.clone(),
            contact: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// A preloaded route set for an out-of-dialog request (name-addr values,
    /// first hop first); routed like a dialog's (§8.1.2).
    pub fn route_set(mut self, routes: &[String]) -> Self {
        self.route_set = routes.to_vec();
        self
    }

    /// Our Contact URI (mandatory in INVITE and re-INVITE, §8.1.1.8).
    pub fn contact(mut self, uri: &str) -> Self {
        self.contact = Some(uri.to_string());
        self
    }

    /// Any further header (Authorization, P-Asserted-Identity, Expires, …).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.body = Some((content_type.to_string(), body));
        self
    }

    /// Encode with our Via `sent_by` (host:port we listen on) and `branch`
    /// (see [`branch_from`]).
    pub fn build(self, sent_by: &str, branch: &str) -> OutgoingRequest {
        let routed = route(&self.target, &self.route_set);
        let mut out = String::with_capacity(640);
        let _ = write!(
            out,
            "{} {} SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            self.method, routed.request_uri
        );
        for r in &routed.routes {
            let _ = write!(out, "Route: {r}\r\n");
        }
        let _ = write!(
            out,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.from, self.to, self.call_id, self.cseq, self.method
        );
        if let Some(c) = &self.contact {
            let _ = write!(out, "Contact: <{c}>\r\n");
        }
        for (n, v) in &self.extra {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        let body = match self.body {
            Some((ctype, body)) => {
                let _ = write!(out, "Content-Type: {ctype}\r\n");
                body
            }
            None => Vec::new(),
        };
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&body);
        OutgoingRequest {
            wire: bytes.into(),
            method: self.method,
            branch: branch.to_string(),
            call_id: self.call_id,
            cseq: self.cseq,
            next_hop: routed.next_hop,
        }
    }
}

/// A request's Request-URI, Route headers and next hop (§12.2.1.1).
#[derive(Debug, PartialEq, Eq)]
struct Routed {
    request_uri: String,
    routes: Vec<String>,
    next_hop: String,
}

fn route(target: &str, route_set: &[String]) -> Routed {
    let Some(first) = route_set.first() else {
        return Routed {
            request_uri: target.to_string(),
            routes: Vec::new(),
            next_hop: target.to_string(),
        };
    };
    let first_uri = message::uri_of(first);
    if message::has_param(first_uri.split('?').next().unwrap_or(first_uri), "lr") {
        return Routed {
            request_uri: target.to_string(),
            routes: route_set.to_vec(),
            next_hop: first_uri.to_string(),
        };
    }
    // Strict router: it gets the request in its Request-URI and the remote
    // target travels as the last Route.
    let request_uri = request_uri_form(first_uri);
    let mut routes: Vec<String> = route_set[1..].to_vec();
    routes.push(format!("<{target}>"));
    Routed {
        next_hop: request_uri.clone(),
        request_uri,
        routes,
    }
}

/// A URI as a Request-URI may carry it: without `?headers` or the `method`
/// parameter (§19.1.1 table 1, which §12.2.1.1 asks us to apply).
fn request_uri_form(uri: &str) -> String {
    let uri = uri.split('?').next().unwrap_or(uri);
    let mut parts = uri.split(';');
    let mut out = parts.next().unwrap_or_default().to_string();
    for p in parts {
        let key = p.split('=').next().unwrap_or("").trim();
        if !key.eq_ignore_ascii_case("method") {
            out.push(';');
            out.push_str(p);
        }
    }
    out
}

/// The CANCEL for an INVITE we sent (§9.1): same Request-URI, Call-ID, To,
/// From, CSeq number and single top Via (so the same branch), the INVITE's
/// Route headers. It goes to the same destination as the INVITE.
pub fn cancel_for(invite: &Message) -> Wire {
    derived_from_invite(invite, Method::Cancel, invite.header("To").unwrap_or_default())
}

/// The ACK for a 3xx–6xx response to an INVITE we sent (§17.1.1.3): like
/// the CANCEL, but To is the response's (with its tag).
pub fn ack_for_non2xx(invite: &Message, response: &Message) -> Wire {
    derived_from_invite(invite, Method::Ack, response.header("To").unwrap_or_default())
}

fn derived_from_invite(invite: &Message, method: Method, to: &str) -> Wire {
    let uri = match &invite.start {
        message::StartLine::Request { uri, .. } => uri.as_str(),
        message::StartLine::Response { .. } => "",
    };
    let h = |name| invite.header(name).unwrap_or_default();
    let cseq = h("CSeq").split_ascii_whitespace().next().unwrap_or("0");
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "{method} {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n",
        h("Via")
    );
    for r in invite.headers_named("Route") {
        let _ = write!(out, "Route: {r}\r\n");
    }
    let _ = write!(
        out,
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        h("From"),
        h("Call-ID"),
    );
    out.into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::dialog::{Dialog, DialogId, DialogState, Role};
    use crate::sip::message::{Incoming, Request, parse};
    use std::net::SocketAddr;

    const SENT_BY: &str = "10.0.0.1:5060";

    fn parse_request(out: &OutgoingRequest) -> Request {
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        match parse(&out.wire, src) {
            Ok(Incoming::Request(r)) => *r,
            other => panic!("did not parse: {other:?}\n{}", String::from_utf8_lossy(&out.wire)),
        }
    }

    /// The headers RFC 3261 §8.1.1 makes mandatory, and what we promised.
    fn assert_well_formed(out: &OutgoingRequest) -> Request {
        let req = parse_request(out);
        for h in ["To", "From", "CSeq", "Call-ID", "Max-Forwards", "Via"] {
            assert!(req.msg.header(h).is_some(), "{h} missing");
        }
        assert_eq!(req.msg.header("Max-Forwards"), Some("70"));
        assert!(req.from_tag.is_some(), "From needs our tag");
        assert_eq!(req.method, out.method);
        assert_eq!(req.cseq_method, out.method);
        assert_eq!(req.cseq, out.cseq);
        assert_eq!(req.call_id, out.call_id);
        assert_eq!(req.branch, out.branch);
        assert!(req.branch.starts_with("z9hG4bK"));
        let via = req.msg.header("Via").unwrap();
        assert!(
            via.starts_with(&format!("SIP/2.0/UDP {SENT_BY};")) && via.ends_with(";rport"),
            "{via}"
        );
        assert_eq!(
            req.msg.header("Content-Length").unwrap().parse::<usize>().unwrap(),
            req.msg.body.len()
        );
        req
    }

    fn dialog(route_set: &[&str]) -> Dialog {
        Dialog {
            id: DialogId {
                call_id: "c1".into(),
                local_tag: "us".into(),
                remote_tag: "them".into(),
            },
            role: Role::Uac,
            state: DialogState::Confirmed,
            local_uri: "\"Shop\" <sip:shop@10.0.0.1>".into(),
            remote_uri: "<sip:phone@10.0.0.5>".into(),
            remote_target: "sip:phone@10.0.0.5:5062".into(),
            route_set: route_set.iter().map(|s| s.to_string()).collect(),
            local_cseq: 20,
            remote_cseq: None,
        }
    }

    fn initial_invite() -> OutgoingRequest {
        RequestBuilder::out_of_dialog(
            Method::Invite,
            "sip:phone@10.0.0.5:5062",
            "\"Courier\" <sip:0901@10.0.0.1>",
            "t1",
            "<sip:phone@10.0.0.5>",
            "call-9",
            1,
        )
        .contact("sip:shop@10.0.0.1:5060")
        .header("P-Asserted-Identity", "<sip:0901@10.0.0.1>")
        .header("Proxy-Authorization", "Digest username=\"u\", realm=\"r\"")
        .body("application/sdp", b"v=0\r\n".to_vec())
        .build(SENT_BY, &branch_from(0xabc))
    }

    #[test]
    fn initial_invite_has_everything() {
        let out = initial_invite();
        let req = assert_well_formed(&out);
        assert_eq!(out.branch, "z9hG4bK0000000000000abc");
        assert_eq!(req.uri, "sip:phone@10.0.0.5:5062");
        assert_eq!(out.next_hop, "sip:phone@10.0.0.5:5062");
        assert_eq!(req.from_tag.as_deref(), Some("t1"));
        assert_eq!(req.to_tag, None);
        assert_eq!(req.msg.header("Contact"), Some("<sip:shop@10.0.0.1:5060>"));
        assert_eq!(req.msg.header("P-Asserted-Identity"), Some("<sip:0901@10.0.0.1>"));
        assert!(req.msg.header("Proxy-Authorization").is_some());
        assert_eq!(req.msg.header("Content-Type"), Some("application/sdp"));
        assert_eq!(req.msg.body, b"v=0\r\n");
    }

    #[test]
    fn register_and_options_out_of_dialog() {
        let reg = RequestBuilder::out_of_dialog(
            Method::Register,
            "sip:provider.example",
            "<sip:0312345678@provider.example>",
            "rt",
            "<sip:0312345678@provider.example>",
            "reg-1",
            3,
        )
        .contact("sip:abc@10.0.0.1:5060")
        .header("Expires", "600")
        .build(SENT_BY, &branch_from(1));
        let req = assert_well_formed(&reg);
        assert_eq!(req.msg.header("Expires"), Some("600"));
        let opt = RequestBuilder::out_of_dialog(
            Method::Options,
            "sip:provider.example",
            "<sip:0312345678@provider.example>",
            "ot",
            "<sip:provider.example>",
            "opt-1",
            1,
        )
        .build(SENT_BY, &branch_from(2));
        let req = assert_well_formed(&opt);
        assert_eq!(req.uri, "sip:provider.example");
        assert_eq!(req.msg.header("Contact"), None);
    }

    #[test]
    fn in_dialog_requests_number_up_and_ack_reuses_the_invite_number() {
        let mut d = dialog(&[]);
        let bye = RequestBuilder::in_dialog(&mut d, Method::Bye).build(SENT_BY, &branch_from(3));
        let req = assert_well_formed(&bye);
        assert_eq!((req.cseq, d.local_cseq), (21, 21));
        assert_eq!(req.uri, "sip:phone@10.0.0.5:5062");
        assert_eq!(req.msg.header("From"), Some("\"Shop\" <sip:shop@10.0.0.1>;tag=us"));
        assert_eq!(req.msg.header("To"), Some("<sip:phone@10.0.0.5>;tag=them"));
        assert_eq!(req.msg.headers_named("Route").count(), 0);
        assert_eq!(bye.next_hop, "sip:phone@10.0.0.5:5062");

        let reinvite = RequestBuilder::in_dialog(&mut d, Method::Invite)
            .contact("sip:shop@10.0.0.1:5060")
            .body("application/sdp", b"v=0\r\n".to_vec())
            .build(SENT_BY, &branch_from(4));
        assert_eq!(assert_well_formed(&reinvite).cseq, 22);
        let update = RequestBuilder::in_dialog(&mut d, Method::Update).build(SENT_BY, &branch_from(5));
        assert_eq!(assert_well_formed(&update).cseq, 23);

        let ack = RequestBuilder::ack_for_2xx(&d, 22).build(SENT_BY, &branch_from(6));
        let req = assert_well_formed(&ack);
        assert_eq!((req.method.clone(), req.cseq), (Method::Ack, 22));
        assert_eq!(d.local_cseq, 23, "the ACK takes no new number");
        assert_ne!(ack.branch, reinvite.branch, "a 2xx ACK is a new transaction");
    }

    #[test]
    fn loose_routing_keeps_the_target_and_lists_the_route_set() {
        let mut d = dialog(&["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        let bye = RequestBuilder::in_dialog(&mut d, Method::Bye).build(SENT_BY, &branch_from(7));
        let req = assert_well_formed(&bye);
        assert_eq!(req.uri, "sip:phone@10.0.0.5:5062");
        let routes: Vec<&str> = req.msg.headers_named("Route").collect();
        assert_eq!(routes, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        assert_eq!(bye.next_hop, "sip:p1.example;lr");
    }

    #[test]
    fn strict_routing_puts_the_first_route_in_the_request_uri() {
        let mut d = dialog(&[
            "<sip:strict.example;maddr=10.0.0.9;method=INVITE?x=y>",
            "<sip:p2.example;lr>",
        ]);
        let bye = RequestBuilder::in_dialog(&mut d, Method::Bye).build(SENT_BY, &branch_from(8));
        let req = assert_well_formed(&bye);
        assert_eq!(req.uri, "sip:strict.example;maddr=10.0.0.9");
        let routes: Vec<&str> = req.msg.headers_named("Route").collect();
        assert_eq!(routes, ["<sip:p2.example;lr>", "<sip:phone@10.0.0.5:5062>"]);
        assert_eq!(bye.next_hop, "sip:strict.example;maddr=10.0.0.9");
    }

    #[test]
    fn preloaded_route_on_an_initial_request() {
        let out = RequestBuilder::out_of_dialog(
            Method::Invite,
            "sip:phone@10.0.0.5",
            "<sip:shop@10.0.0.1>",
            "t",
            "<sip:phone@10.0.0.5>",
            "c",
            1,
        )
        .route_set(&["<sip:outbound.example;lr>".to_string()])
        .contact("sip:shop@10.0.0.1")
        .build(SENT_BY, &branch_from(9));
        let req = assert_well_formed(&out);
        assert_eq!(req.uri, "sip:phone@10.0.0.5");
        assert_eq!(req.msg.header("Route"), Some("<sip:outbound.example;lr>"));
        assert_eq!(out.next_hop, "sip:outbound.example;lr");
    }

    #[test]
    fn next_hop_addresses() {
        let at = |u: &str| uri_destination(u).map(|a| a.to_string());
        assert_eq!(
            at("sip:phone@10.0.0.5:5062;transport=udp").as_deref(),
            Some("10.0.0.5:5062")
        );
        assert_eq!(at("<sip:10.0.0.7;lr>").as_deref(), Some("10.0.0.7:5060"));
        assert_eq!(at("sips:a@10.0.0.7").as_deref(), Some("10.0.0.7:5061"));
        assert_eq!(at("sip:a@[2001:db8::1]:5070").as_deref(), Some("[2001:db8::1]:5070"));
        assert_eq!(
            at("sip:proxy.example;maddr=10.0.0.9;lr").as_deref(),
            Some("10.0.0.9:5060")
        );
        assert_eq!(at("sip:proxy.example;lr"), None, "names need DNS, which is not ours");
        let mut d = dialog(&["<sip:10.0.0.8:5070;lr>"]);
        let bye = RequestBuilder::in_dialog(&mut d, Method::Bye).build(SENT_BY, &branch_from(11));
        assert_eq!(bye.destination(), Some("10.0.0.8:5070".parse().unwrap()));
    }

    #[test]
    fn ack_for_2xx_may_carry_the_answer() {
        let d = dialog(&[]);
        let ack = RequestBuilder::ack_for_2xx(&d, 20)
            .body("application/sdp", b"v=0\r\n".to_vec())
            .build(SENT_BY, &branch_from(12));
        let req = assert_well_formed(&ack);
        assert_eq!(req.msg.body, b"v=0\r\n");
        assert_eq!(req.msg.header("Content-Type"), Some("application/sdp"));
    }

    #[test]
    fn cancel_and_non2xx_ack_copy_the_invite() {
        let invite = RequestBuilder::out_of_dialog(
            Method::Invite,
            "sip:phone@10.0.0.5",
            "<sip:shop@10.0.0.1>",
            "t",
            "<sip:phone@10.0.0.5>",
            "c",
            5,
        )
        .route_set(&["<sip:p1.example;lr>".to_string(), "<sip:p2.example;lr>".to_string()])
        .contact("sip:shop@10.0.0.1")
        .build(SENT_BY, &branch_from(10));
        let inv = message::normalise(&invite.wire).unwrap();
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();

        let cancel = match parse(&cancel_for(&inv), src) {
            Ok(Incoming::Request(r)) => *r,
            other => panic!("{other:?}"),
        };
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!((cancel.cseq, cancel.cseq_method.clone()), (5, Method::Cancel));
        assert_eq!(cancel.uri, "sip:phone@10.0.0.5");
        assert_eq!(cancel.branch, invite.branch);
        assert_eq!(cancel.msg.headers_named("Via").count(), 1);
        assert_eq!(cancel.msg.header("Via"), inv.header("Via"));
        assert_eq!(cancel.msg.header("To"), Some("<sip:phone@10.0.0.5>"));
        assert_eq!(cancel.msg.header("From"), inv.header("From"));
        assert_eq!(cancel.call_id, "c");
        assert_eq!(cancel.msg.headers_named("Route").count(), 2);
        assert!(cancel.msg.header("Max-Forwards").is_some());

        let busy = message::normalise(
            b"SIP/2.0 486 Busy Here\r\nVia: x\r\nTo: <sip:phone@10.0.0.5>;tag=ph\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\n\r\n",
        )
        .unwrap();
        let ack = match parse(&ack_for_non2xx(&inv, &busy), src) {
            Ok(Incoming::Request(r)) => *r,
            other => panic!("{other:?}"),
        };
        assert_eq!((ack.method.clone(), ack.cseq), (Method::Ack, 5));
        assert_eq!(
            ack.branch, invite.branch,
            "the non-2xx ACK stays in the INVITE transaction"
        );
        assert_eq!(ack.to_tag.as_deref(), Some("ph"));
        assert_eq!(ack.uri, "sip:phone@10.0.0.5");
        assert_eq!(ack.msg.headers_named("Route").count(), 2);
    }
}
