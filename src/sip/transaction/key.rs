//! Which transaction a message belongs to: RFC 3261 §17.2.3 for requests we
//! serve (branch + sent-by + method, with an RFC 2543 fallback for peers
//! whose branch lacks the magic cookie) and §17.1.3 for responses to our
//! requests (branch + CSeq method).

use crate::sip::message::{Method, Request, Response};

/// The RFC 3261 magic cookie that makes a branch globally unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The key of a server transaction. An ACK gets the key of the INVITE it
/// acknowledges (for a 3xx–6xx it shares the branch; the ACK for a 2xx has
/// a new branch and so matches nothing, as it should). A CANCEL has a key of
/// its own; [`cancel_target`](Self::cancel_target) gives the INVITE's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerTxKey {
    Rfc3261 {
        branch: String,
        /// host:port of the top Via, host lowercased.
        sent_by: String,
        method: Method,
    },
    /// An RFC 2543 peer: the request itself identifies the transaction. The
    /// To tag is left out because the ACK carries the tag of our response,
    /// which the INVITE did not have; the owner checks it if it cares.
    Rfc2543 {
        request_uri: String,
        call_id: String,
        cseq: u32,
        from_tag: String,
        sent_by: String,
        method: Method,
    },
}

impl ServerTxKey {
    pub fn of(req: &Request) -> ServerTxKey {
        let top_via = req.msg.header("Via").unwrap_or_default();
        let sent_by = sent_by(top_via);
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        if req.branch.starts_with(MAGIC_COOKIE) {
            ServerTxKey::Rfc3261 {
                branch: req.branch.clone(),
                sent_by,
                method,
            }
        } else {
            ServerTxKey::Rfc2543 {
                request_uri: req.uri.clone(),
                call_id: req.call_id.clone(),
                cseq: req.cseq,
                from_tag: req.from_tag.clone().unwrap_or_default(),
                sent_by,
                method,
            }
        }
    }

    pub fn method(&self) -> &Method {
        match self {
            ServerTxKey::Rfc3261 { method, .. } | ServerTxKey::Rfc2543 { method, .. } => method,
        }
    }

    /// For a CANCEL's key, the key of the INVITE it cancels (§9.2).
    pub fn cancel_target(&self) -> Option<ServerTxKey> {
        if *self.method() != Method::Cancel {
            return None;
        }
        let mut target = self.clone();
        match &mut target {
            ServerTxKey::Rfc3261 { method, .. } | ServerTxKey::Rfc2543 { method, .. } => *method = Method::Invite,
        }
        Some(target)
    }
}

impl std::fmt::Display for ServerTxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerTxKey::Rfc3261 {
                branch,
                sent_by,
                method,
            } => write!(f, "{branch}|{sent_by}|{method}"),
            ServerTxKey::Rfc2543 {
                request_uri,
                call_id,
                cseq,
                from_tag,
                sent_by,
                method,
            } => write!(f, "2543|{request_uri}|{call_id}|{cseq}|{from_tag}|{sent_by}|{method}"),
        }
    }
}

/// The sent-by of a Via value (`SIP/2.0/UDP Host:5060;branch=…` →
/// `host:5060`), without whitespace, host case folded (§7.3.1: host names
/// compare case-insensitively). A missing port stays missing.
pub fn sent_by(via: &str) -> String {
    let after_protocol = via.trim().split_once(char::is_whitespace).map_or("", |(_, rest)| rest);
    let value = after_protocol.split(';').next().unwrap_or_default();
    value
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The key of a client transaction (§17.1.3): our branch and the method.
/// An INVITE and its CANCEL share the branch and differ by method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientTxKey {
    pub branch: String,
    pub method: Method,
}

impl ClientTxKey {
    pub fn new(branch: &str, method: Method) -> ClientTxKey {
        ClientTxKey {
            branch: branch.to_string(),
            method,
        }
    }

    pub fn of_response(resp: &Response) -> ClientTxKey {
        ClientTxKey {
            branch: resp.branch.clone(),
            method: resp.cseq_method.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Incoming, parse};
    use std::net::SocketAddr;

    fn request(text: &str) -> Request {
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        match parse(text.as_bytes(), src).unwrap() {
            Incoming::Request(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn req(method: &str, via: &str, cseq: u32, to_tag: &str) -> Request {
        request(&format!(
            "{method} sip:shop@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@127.0.0.1>;tag=f\r\n\
To: <sip:shop@127.0.0.1>{to_tag}\r\nCall-ID: cid\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    const VIA: &str = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport";

    #[test]
    fn sent_by_is_normalised() {
        assert_eq!(
            sent_by("SIP/2.0/UDP Host.Example:5070;branch=z9hG4bK1"),
            "host.example:5070"
        );
        assert_eq!(sent_by("SIP/2.0/UDP  host.example ;branch=x"), "host.example");
        assert_eq!(sent_by("SIP/2.0/UDP [2001:DB8::1]:5060"), "[2001:db8::1]:5060");
    }

    #[test]
    fn ack_for_an_error_matches_its_invite_and_cancel_has_its_own_key() {
        let invite = ServerTxKey::of(&req("INVITE", VIA, 1, ""));
        assert_eq!(ServerTxKey::of(&req("INVITE", VIA, 1, "")), invite, "a retransmission");
        assert_eq!(ServerTxKey::of(&req("ACK", VIA, 1, ";tag=ours")), invite);
        let cancel = ServerTxKey::of(&req("CANCEL", VIA, 1, ""));
        assert_ne!(cancel, invite);
        assert_eq!(cancel.cancel_target(), Some(invite.clone()));
        assert_eq!(invite.cancel_target(), None);
        let bye = ServerTxKey::of(&req("BYE", VIA, 2, ";tag=ours"));
        assert_ne!(bye, invite);
    }

    #[test]
    fn same_branch_from_another_sent_by_is_another_transaction() {
        let a = ServerTxKey::of(&req("INVITE", VIA, 1, ""));
        let b = ServerTxKey::of(&req("INVITE", "SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK-1", 1, ""));
        assert_ne!(a, b);
        let c = ServerTxKey::of(&req("INVITE", "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1", 1, ""));
        assert_ne!(a, c);
        // Only sent-by counts, not other Via parameters (rport, received …).
        let d = ServerTxKey::of(&req("INVITE", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1", 1, ""));
        assert_eq!(a, d);
    }

    #[test]
    fn rfc2543_peers_are_matched_by_the_request() {
        let old_via = "SIP/2.0/UDP 127.0.0.1:5070;branch=1234";
        let invite = ServerTxKey::of(&req("INVITE", old_via, 1, ""));
        assert!(matches!(invite, ServerTxKey::Rfc2543 { .. }), "{invite}");
        assert_eq!(ServerTxKey::of(&req("ACK", old_via, 1, ";tag=ours")), invite);
        assert_ne!(ServerTxKey::of(&req("INVITE", old_via, 2, "")), invite);
        let no_branch = ServerTxKey::of(&req("INVITE", "SIP/2.0/UDP 127.0.0.1:5070", 1, ""));
        assert_eq!(
            ServerTxKey::of(&req("ACK", "SIP/2.0/UDP 127.0.0.1:5070", 1, ";tag=x")),
            no_branch
        );
        let cancel = ServerTxKey::of(&req("CANCEL", "SIP/2.0/UDP 127.0.0.1:5070", 1, ""));
        assert_eq!(cancel.cancel_target(), Some(no_branch.clone()));
        assert_ne!(
            ServerTxKey::of(&req("INVITE", "SIP/2.0/UDP 127.0.0.9:5070", 1, "")),
            no_branch
        );
    }

    #[test]
    fn client_key_tells_invite_and_cancel_apart() {
        let parse_resp = |method: &str| {
            let text = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n\r\n"
            );
            match parse(text.as_bytes(), "10.0.0.5:5060".parse().unwrap()).unwrap() {
                Incoming::Response(r) => *r,
                other => panic!("{other:?}"),
            }
        };
        let invite = ClientTxKey::new("z9hG4bKx", Method::Invite);
        assert_eq!(ClientTxKey::of_response(&parse_resp("INVITE")), invite);
        assert_eq!(
            ClientTxKey::of_response(&parse_resp("CANCEL")),
            ClientTxKey::new("z9hG4bKx", Method::Cancel)
        );
        assert_ne!(ClientTxKey::of_response(&parse_resp("CANCEL")), invite);
    }
}
