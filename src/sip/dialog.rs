//! RFC 3261 §12 dialogs, sans-IO: identity, route set, remote target and
//! CSeq bookkeeping for both roles, and a table that finds the dialog an
//! incoming request or response belongs to. A UAC INVITE may create several
//! early dialogs (one per fork, told apart by the To tag).

use std::collections::HashMap;

use super::message::{self, Message, Method, Request, Response};

/// (Call-ID, local tag, remote tag): what names a dialog (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming request claims: its To tag is ours. `None`
    /// when it has no To tag (it is not inside a dialog).
    pub fn of_request(req: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.call_id.clone(),
            local_tag: req.to_tag.clone()?,
            remote_tag: req.from_tag.clone().unwrap_or_default(),
        })
    }

    /// The dialog a response to our request belongs to: the From tag is
    /// ours, the To tag theirs. `None` without a To tag.
    pub fn of_response(resp: &Response) -> Option<DialogId> {
        Some(DialogId {
            call_id: resp.call_id.clone(),
            local_tag: resp.msg.header("From").and_then(tag_of)?.to_string(),
            remote_tag: resp.to_tag.clone()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We answered the INVITE.
    Uas,
    /// We sent the INVITE.
    Uac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// A 2xx was sent (UAS) or received (UAC).
    Confirmed,
}

/// What to do with an incoming request inside a dialog (§12.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDialogVerdict {
    /// Go ahead; `target_refreshed` says the remote target changed.
    Accept { target_refreshed: bool },
    /// Its CSeq is not above the last one seen: answer 500 (§12.2.2).
    OutOfOrder { last: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub role: Role,
    pub state: DialogState,
    /// Our From (UAC) or To (UAS) value, verbatim but without its tag.
    pub local_uri: String,
    /// Their side of the same, without tag.
    pub remote_uri: String,
    /// The peer's Contact URI: where in-dialog requests are addressed.
    pub remote_target: String,
    /// Route values (name-addr) in the order our requests must list them.
    pub route_set: Vec<String>,
    /// The CSeq number of our last request in this dialog.
    pub local_cseq: u32,
    /// The CSeq number of their last request; empty until they send one (UAC).
    pub remote_cseq: Option<u32>,
}

impl Dialog {
    /// The UAS side, from the INVITE we answer with `local_tag` (§12.1.1).
    /// It starts Early; [`confirm`](Self::confirm) it when the 2xx goes out.
    /// `initial_local_cseq` is where our own numbering starts (random is fine).
    pub fn uas(invite: &Request, local_tag: &str, initial_local_cseq: u32) -> Dialog {
        let msg = &invite.msg;
        Dialog {
            id: DialogId {
                call_id: invite.call_id.clone(),
                local_tag: local_tag.to_string(),
                remote_tag: invite.from_tag.clone().unwrap_or_default(),
            },
            role: Role::Uas,
            state: DialogState::Early,
            local_uri: strip_tag(msg.header("To").unwrap_or_default()),
            remote_uri: strip_tag(msg.header("From").unwrap_or_default()),
            // A Contact is mandatory in an INVITE; without one the source is
            // the only place left to reach the caller.
            remote_target: contact_uri(msg).unwrap_or_else(|| format!("sip:{}", invite.source)),
            route_set: record_routes(msg),
            local_cseq: initial_local_cseq,
            remote_cseq: Some(invite.cseq),
        }
    }

    /// The UAC side, from our INVITE and a 101–299 response carrying a To tag
    /// (§12.1.2): Early for a provisional, Confirmed for a 2xx. `None` for
    /// any other response.
    pub fn uac(invite: &Message, resp: &Response) -> Option<Dialog> {
        if !(101..300).contains(&resp.code) {
            return None;
        }
        let remote_tag = resp.to_tag.clone()?;
        let from = invite.header("From")?;
        let mut route_set = record_routes(&resp.msg);
        route_set.reverse();
        Some(Dialog {
            id: DialogId {
                call_id: resp.call_id.clone(),
                local_tag: tag_of(from)?.to_string(),
                remote_tag,
            },
            role: Role::Uac,
            state: if resp.code >= 200 {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_uri: strip_tag(from),
            remote_uri: strip_tag(resp.msg.header("To").unwrap_or_default()),
            // A 2xx must carry a Contact; without one, keep addressing the
            // INVITE's Request-URI.
            remote_target: contact_uri(&resp.msg).unwrap_or_else(|| request_uri(invite).to_string()),
            route_set,
            local_cseq: resp.cseq,
            remote_cseq: None,
        })
    }

    /// UAS: our 2xx went out.
    pub fn confirm(&mut self) {
        self.state = DialogState::Confirmed;
    }

    /// UAC: a 2xx for this (early or confirmed) dialog arrived. The route set
    /// and remote target are taken from the 2xx (§13.2.2.4). Returns whether
    /// the dialog was early until now.
    pub fn on_uac_2xx(&mut self, resp: &Response) -> bool {
        let was_early = self.state == DialogState::Early;
        if was_early {
            let mut route_set = record_routes(&resp.msg);
            route_set.reverse();
            self.route_set = route_set;
            self.state = DialogState::Confirmed;
        }
        if let Some(target) = contact_uri(&resp.msg) {
            self.remote_target = target;
        }
        was_early
    }

    /// The CSeq number for our next request (ACK and CANCEL reuse the INVITE's).
    pub fn next_local_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        self.local_cseq
    }

    /// Check an incoming request of this dialog and update the dialog (§12.2.2).
    pub fn check_request(&mut self, req: &Request) -> InDialogVerdict {
        // ACK and CANCEL carry the INVITE's number; they are not new requests.
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return InDialogVerdict::Accept {
                target_refreshed: false,
            };
        }
        if let Some(last) = self.remote_cseq
            && req.cseq <= last
        {
            return InDialogVerdict::OutOfOrder { last };
        }
        self.remote_cseq = Some(req.cseq);
        let mut target_refreshed = false;
        if is_target_refresh(&req.method)
            && let Some(target) = contact_uri(&req.msg)
            && target != self.remote_target
        {
            self.remote_target = target;
            target_refreshed = true;
        }
        InDialogVerdict::Accept { target_refreshed }
    }

    /// Our From (UAC) or To (UAS) value, with our tag.
    pub fn local_party(&self) -> String {
        with_tag(&self.local_uri, &self.id.local_tag)
    }

    /// Their side, with their tag (an empty remote tag is an RFC 2543 peer).
    pub fn remote_party(&self) -> String {
        if self.id.remote_tag.is_empty() {
            self.remote_uri.clone()
        } else {
            with_tag(&self.remote_uri, &self.id.remote_tag)
        }
    }
}

/// Requests that may change the remote target (RFC 3261 §12.2, RFC 3311).
fn is_target_refresh(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Update)
}

/// Record-Route values in message order, comma-joined ones split.
fn record_routes(msg: &Message) -> Vec<String> {
    msg.headers_named("Record-Route")
        .flat_map(message::split_list)
        .map(str::to_string)
        .collect()
}

fn request_uri(msg: &Message) -> &str {
    match &msg.start {
        message::StartLine::Request { uri, .. } => uri,
        message::StartLine::Response { .. } => "",
    }
}

fn contact_uri(msg: &Message) -> Option<String> {
    let contact = msg.header("Contact")?;
    let first = message::split_list(contact).into_iter().next()?;
    Some(message::uri_of(first).to_string())
}

/// The header parameters of a name-addr or addr-spec value (after the URI).
fn header_params(v: &str) -> &str {
    match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v.find(';').map_or("", |i| &v[i..]),
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(v: &str) -> Option<&str> {
    header_params(v)
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("tag"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

/// A From/To value without its `tag` parameter.
pub fn strip_tag(v: &str) -> String {
    let (head, params) = match v.rfind('>') {
        Some(i) => v.split_at(i + 1),
        None => v.split_at(v.find(';').unwrap_or(v.len())),
    };
    let mut out = head.trim().to_string();
    for p in params.split(';').skip(1) {
        let key = p.split('=').next().unwrap_or("").trim();
        if !key.eq_ignore_ascii_case("tag") && !p.trim().is_empty() {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

/// A From/To value with `tag` appended.
pub fn with_tag(v: &str, tag: &str) -> String {
    format!("{v};tag={tag}")
}

/// How a response to our INVITE changed the dialog table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UacDialogChange {
    /// No dialog: a 100, a provisional without To tag, or a 3xx–6xx.
    NoDialog,
    /// A fork answered provisionally: a new early dialog.
    NewEarly(DialogId),
    /// A 2xx created or confirmed this dialog: ACK it.
    Confirmed(DialogId),
    /// A further 1xx for an early dialog, or a retransmitted 2xx for a
    /// confirmed one (re-send the same ACK).
    Repeated(DialogId),
}

/// Every dialog of the engine, keyed by [`DialogId`].
#[derive(Debug, Default)]
pub struct Dialogs {
    map: HashMap<DialogId, Dialog>,
}

impl Dialogs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, dialog: Dialog) -> Option<Dialog> {
        self.map.insert(dialog.id.clone(), dialog)
    }

    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.map.get(id)
    }

    pub fn get_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.map.get_mut(id)
    }

    pub fn remove(&mut self, id: &DialogId) -> Option<Dialog> {
        self.map.remove(id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The dialog an incoming in-dialog request belongs to. `None` means
    /// 481 (or, without a To tag, that it is not an in-dialog request).
    pub fn for_request(&mut self, req: &Request) -> Option<&mut Dialog> {
        self.map.get_mut(&DialogId::of_request(req)?)
    }

    /// The dialog a response to one of our requests belongs to.
    pub fn for_response(&mut self, resp: &Response) -> Option<&mut Dialog> {
        self.map.get_mut(&DialogId::of_response(resp)?)
    }

    /// Feed every response to our INVITE (`invite` is what we sent): creates
    /// early dialogs per fork and confirms them on 2xx.
    pub fn on_invite_response(&mut self, invite: &Message, resp: &Response) -> UacDialogChange {
        let Some(id) = DialogId::of_response(resp) else {
            return UacDialogChange::NoDialog;
        };
        if !(101..300).contains(&resp.code) {
            return UacDialogChange::NoDialog;
        }
        if let Some(dialog) = self.map.get_mut(&id) {
            if resp.code >= 200 && dialog.on_uac_2xx(resp) {
                return UacDialogChange::Confirmed(id);
            }
            return UacDialogChange::Repeated(id);
        }
        let Some(dialog) = Dialog::uac(invite, resp) else {
            return UacDialogChange::NoDialog;
        };
        let change = match dialog.state {
            DialogState::Early => UacDialogChange::NewEarly(id),
            DialogState::Confirmed => UacDialogChange::Confirmed(id),
        };
        self.insert(dialog);
        change
    }

    /// The dialogs one INVITE of ours created (its forks).
    pub fn forks<'a>(&'a self, call_id: &'a str, local_tag: &'a str) -> impl Iterator<Item = &'a Dialog> + 'a {
        self.map
            .values()
            .filter(move |d| d.id.call_id == call_id && d.id.local_tag == local_tag)
    }

    /// Drop the early dialogs of one INVITE (its transaction ended without a
    /// 2xx from them, §12.3) and return them.
    pub fn remove_early(&mut self, call_id: &str, local_tag: &str) -> Vec<Dialog> {
        let ids: Vec<DialogId> = self
            .forks(call_id, local_tag)
            .filter(|d| d.state == DialogState::Early)
            .map(|d| d.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.map.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Incoming, parse};
    use std::net::SocketAddr;

    fn src() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    const INVITE: &str = "INVITE sip:shop@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
Record-Route: <sip:p3.example;lr>\r\n\
From: \"Courier\" <sip:0901@127.0.0.1:5070>;tag=them\r\n\
To: <sip:shop@127.0.0.1:5060>\r\n\
Call-ID: call-1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:5070;transport=udp>\r\n\
Content-Length: 0\r\n\r\n";

    /// Our outgoing INVITE, as the UAC tests use it.
    const OUR_INVITE: &str = "INVITE sip:phone@10.0.0.5 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:shop@10.0.0.1>;tag=us\r\n\
To: <sip:phone@10.0.0.5>\r\n\
Call-ID: out-1\r\n\
CSeq: 20 INVITE\r\n\
Contact: <sip:shop@10.0.0.1:5060>\r\n\
Content-Length: 0\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes(), src()).unwrap() {
            Incoming::Request(r) => *r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response(code: u16, to_tag: Option<&str>, extra: &str) -> Response {
        let to = match to_tag {
            Some(t) => format!("<sip:phone@10.0.0.5>;tag={t}"),
            None => "<sip:phone@10.0.0.5>".into(),
        };
        let text = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours;rport\r\n\
From: <sip:shop@10.0.0.1>;tag=us\r\nTo: {to}\r\nCall-ID: out-1\r\nCSeq: 20 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes(), src()).unwrap() {
            Incoming::Response(r) => *r,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn our_invite() -> Message {
        message::normalise(OUR_INVITE.as_bytes()).unwrap()
    }

    #[test]
    fn tags_are_read_and_stripped() {
        assert_eq!(tag_of("\"A;B\" <sip:a@b;tag=uri>;tag=x;foo"), Some("x"));
        assert_eq!(tag_of("sip:a@b;tag=y"), Some("y"));
        assert_eq!(tag_of("<sip:a@b;tag=inuri>"), None);
        assert_eq!(strip_tag("\"A\" <sip:a@b;lr>;tag=x;foo=1"), "\"A\" <sip:a@b;lr>;foo=1");
        assert_eq!(strip_tag("sip:a@b;tag=y"), "sip:a@b");
    }

    #[test]
    fn uas_dialog_from_invite() {
        let req = request(INVITE);
        let d = Dialog::uas(&req, "ours", 100);
        assert_eq!(
            d.id,
            DialogId {
                call_id: "call-1".into(),
                local_tag: "ours".into(),
                remote_tag: "them".into()
            }
        );
        assert_eq!((d.role, d.state), (Role::Uas, DialogState::Early));
        assert_eq!(d.remote_target, "sip:caller@127.0.0.1:5070;transport=udp");
        // Record-Route in order, comma-joined values split.
        assert_eq!(
            d.route_set,
            ["<sip:p1.example;lr>", "<sip:p2.example;lr>", "<sip:p3.example;lr>"]
        );
        assert_eq!(d.remote_cseq, Some(7));
        assert_eq!(d.local_party(), "<sip:shop@127.0.0.1:5060>;tag=ours");
        assert_eq!(d.remote_party(), "\"Courier\" <sip:0901@127.0.0.1:5070>;tag=them");
    }

    #[test]
    fn in_dialog_cseq_must_grow_and_target_refresh_updates_contact() {
        let mut d = Dialog::uas(&request(INVITE), "ours", 100);
        d.confirm();
        let in_dialog = |method: &str, cseq: u32, contact: &str| {
            request(
                &INVITE
                    .replace("INVITE sip", &format!("{method} sip"))
                    .replace("CSeq: 7 INVITE", &format!("CSeq: {cseq} {method}"))
                    .replace(
                        "To: <sip:shop@127.0.0.1:5060>",
                        "To: <sip:shop@127.0.0.1:5060>;tag=ours",
                    )
                    .replace("sip:caller@127.0.0.1:5070;transport=udp", contact),
            )
        };
        // The ACK carries the INVITE's number: not out of order.
        assert_eq!(
            d.check_request(&in_dialog("ACK", 7, "sip:caller@127.0.0.1:5070;transport=udp")),
            InDialogVerdict::Accept {
                target_refreshed: false
            }
        );
        assert_eq!(
            d.check_request(&in_dialog("BYE", 7, "sip:x@127.0.0.9")),
            InDialogVerdict::OutOfOrder { last: 7 }
        );
        // A BYE's Contact is no target refresh.
        assert_eq!(
            d.check_request(&in_dialog("OPTIONS", 8, "sip:x@127.0.0.9")),
            InDialogVerdict::Accept {
                target_refreshed: false
            }
        );
        assert_eq!(d.remote_target, "sip:caller@127.0.0.1:5070;transport=udp");
        assert_eq!(
            d.check_request(&in_dialog("INVITE", 9, "sip:moved@127.0.0.9")),
            InDialogVerdict::Accept { target_refreshed: true }
        );
        assert_eq!(d.remote_target, "sip:moved@127.0.0.9");
        assert_eq!(
            d.check_request(&in_dialog("UPDATE", 10, "sip:again@127.0.0.8")),
            InDialogVerdict::Accept { target_refreshed: true }
        );
        assert_eq!(d.remote_target, "sip:again@127.0.0.8");
        assert_eq!(
            d.check_request(&in_dialog("UPDATE", 9, "sip:late@127.0.0.7")),
            InDialogVerdict::OutOfOrder { last: 10 }
        );
        assert_eq!(
            d.remote_target, "sip:again@127.0.0.8",
            "a rejected request changes nothing"
        );
    }

    #[test]
    fn uac_dialog_has_reversed_route_set_and_no_remote_cseq() {
        let rr = "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\n\
Contact: <sip:phone@10.0.0.5:5062>\r\n";
        let d = Dialog::uac(&our_invite(), &response(200, Some("ph"), rr)).unwrap();
        assert_eq!((d.role, d.state), (Role::Uac, DialogState::Confirmed));
        assert_eq!(d.route_set, ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
        assert_eq!(d.remote_target, "sip:phone@10.0.0.5:5062");
        assert_eq!(d.local_cseq, 20);
        assert_eq!(d.remote_cseq, None);
        assert_eq!(d.local_party(), "<sip:shop@10.0.0.1>;tag=us");
        assert_eq!(d.remote_party(), "<sip:phone@10.0.0.5>;tag=ph");
        // No dialog without a To tag, from a 100, or from an error.
        assert!(Dialog::uac(&our_invite(), &response(180, None, "")).is_none());
        assert!(Dialog::uac(&our_invite(), &response(100, Some("x"), "")).is_none());
        assert!(Dialog::uac(&our_invite(), &response(486, Some("x"), "")).is_none());
    }

    #[test]
    fn forked_early_dialogs_and_confirmation() {
        let mut table = Dialogs::new();
        let inv = our_invite();
        assert_eq!(
            table.on_invite_response(&inv, &response(100, None, "")),
            UacDialogChange::NoDialog
        );
        let a = "Contact: <sip:a@10.0.0.6>\r\nRecord-Route: <sip:early.example;lr>\r\n";
        let UacDialogChange::NewEarly(id_a) = table.on_invite_response(&inv, &response(180, Some("a"), a)) else {
            panic!()
        };
        let UacDialogChange::NewEarly(id_b) =
            table.on_invite_response(&inv, &response(183, Some("b"), "Contact: <sip:b@10.0.0.7>\r\n"))
        else {
            panic!()
        };
        assert_ne!(id_a, id_b);
        assert_eq!(table.forks("out-1", "us").count(), 2);
        assert_eq!(
            table.on_invite_response(&inv, &response(180, Some("a"), a)),
            UacDialogChange::Repeated(id_a.clone())
        );
        // The 2xx decides the route set and target.
        let ok = "Contact: <sip:a@10.0.0.6:5070>\r\nRecord-Route: <sip:p1.example;lr>\r\n";
        assert_eq!(
            table.on_invite_response(&inv, &response(200, Some("a"), ok)),
            UacDialogChange::Confirmed(id_a.clone())
        );
        let d = table.get(&id_a).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.route_set, ["<sip:p1.example;lr>"]);
        assert_eq!(d.remote_target, "sip:a@10.0.0.6:5070");
        assert_eq!(
            table.on_invite_response(&inv, &response(200, Some("a"), ok)),
            UacDialogChange::Repeated(id_a.clone())
        );
        // A 2xx from a fork never seen before confirms a dialog of its own.
        assert!(matches!(
            table.on_invite_response(&inv, &response(200, Some("c"), "Contact: <sip:c@10.0.0.8>\r\n")),
            UacDialogChange::Confirmed(_)
        ));
        // The transaction ends: the still-early fork goes.
        let gone = table.remove_early("out-1", "us");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id, id_b);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn table_finds_requests_and_responses() {
        let mut table = Dialogs::new();
        table.insert(Dialog::uas(&request(INVITE), "ours", 1));
        let bye = INVITE
            .replace("INVITE sip", "BYE sip")
            .replace("CSeq: 7 INVITE", "CSeq: 8 BYE")
            .replace(
                "To: <sip:shop@127.0.0.1:5060>",
                "To: <sip:shop@127.0.0.1:5060>;tag=ours",
            );
        assert!(table.for_request(&request(&bye)).is_some());
        let wrong = bye.replace("tag=ours", "tag=other");
        assert!(table.for_request(&request(&wrong)).is_none());
        assert!(
            table.for_request(&request(INVITE)).is_none(),
            "no To tag: not in a dialog"
        );

        table.insert(
            Dialog::uac(
                &our_invite(),
                &response(200, Some("ph"), "Contact: <sip:p@10.0.0.5>\r\n"),
            )
            .unwrap(),
        );
        assert!(table.for_response(&response(200, Some("ph"), "")).is_some());
        assert!(table.for_response(&response(200, Some("other"), "")).is_none());
    }
}
