//! Outside numbers (the owner's mobile), rung through the provider: an
//! INVITE to `sip:NUMBER@<provider domain>`, sent where the line's
//! REGISTERs go, with the line's account. The provider's one 401/407
//! challenge is answered with that account's credentials (a new INVITE:
//! next CSeq, same Call-ID and From tag, new branch); a second challenge
//! fails the leg. Only ring steps naming a configured phone get here, so a
//! caller can never choose the number dialled.

use super::legs::NewLeg;
use super::*;
use crate::call::{LegId, LegStarted};
use crate::config::{OutsideCallerId, OutsideNumber};
use crate::sip::auth;
use crate::sip::register::Account;
use crate::sip::request::{OutgoingRequest, RequestBuilder, branch_from};
use crate::sip::transaction::ClientInvite;

/// What an outside leg needs to send its INVITE again with credentials.
pub(super) struct OutsideLeg {
    /// The line's provider account (its `Debug` hides the password).
    account: Account,
    request_uri: String,
    from: String,
    from_tag: String,
    to: String,
    call_id: String,
    contact: String,
    sent_by: String,
    /// Caller ID headers (P-Asserted-Identity, Diversion) and the rest.
    headers: Vec<(&'static str, String)>,
    offer: String,
    /// Credentials went out once; another challenge means they were refused.
    answered: bool,
}

impl OutsideLeg {
    /// The INVITE numbered `cseq`, with `credentials` (header name, value) if any.
    fn invite(&self, cseq: u32, branch: &str, credentials: Option<(&str, &str)>) -> OutgoingRequest {
        let mut b = RequestBuilder::out_of_dialog(
            Method::Invite,
            &self.request_uri,
            &self.from,
            &self.from_tag,
            &self.to,
            &self.call_id,
            cseq,
        )
        .contact(&self.contact);
        for (name, value) in &self.headers {
            b = b.header(name, value);
        }
        if let Some((name, value)) = credentials {
            b = b.header(name, value);
        }
        b.body("application/sdp", self.offer.clone().into_bytes())
            .build(&self.sent_by, branch)
    }
}

impl Engine {
    /// The registration whose account calls out: `via` if the config names
    /// one, else the line the call came in on if it registers, else the
    /// first registered line by name.
    fn calling_line(&self, call_line: &str, via: Option<&str>) -> Option<&Registration> {
        let live = || self.registrations.iter().filter(|r| !r.is_retired());
        match via {
            Some(via) => live().find(|r| r.cfg.account.line == via),
            None => live()
                .find(|r| r.cfg.account.line == call_line)
                .or_else(|| live().min_by(|a, b| a.cfg.account.line.cmp(&b.cfg.account.line))),
        }
    }

    /// Can an outside phone be called at all (a provider account to use)?
    pub(super) fn outside_reachable(&self, outside: &OutsideNumber) -> bool {
        self.calling_line("", outside.via.as_deref()).is_some()
    }

    /// Start the INVITE to an outside phone through the provider.
    pub(super) fn invite_outside(
        &mut self,
        now: Now,
        key: CallKey,
        phone: &str,
        outside: &OutsideNumber,
    ) -> Option<LegStarted> {
        let entry = self.calls.get(&key)?;
        let record = entry.call.record();
        let call_line = entry.line.clone();
        let caller: String = record
            .caller
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        let Some(registration) = self.calling_line(&call_line, outside.via.as_deref()) else {
            warn!(%phone, via = ?outside.via, "no registered line to call the outside number with: not rung");
            return None;
        };
        let account = registration.cfg.account.clone();
        let contact = registration.contact_uri();
        let sent_by = registration.cfg.local.to_string();
        let line_identity = format!("<sip:{}@{}>", account.user, account.domain);
        let mut headers = vec![
            ("Allow", ALLOW.to_string()),
            ("User-Agent", self.cfg.user_agent.clone()),
        ];
        let from = match outside.caller_id {
            OutsideCallerId::Caller if !caller.is_empty() => {
                // The caller's number on the mobile; the shop's line as the
                // diverting party, which providers check before passing it on.
                let identity = format!("<sip:{caller}@{}>", account.domain);
                headers.push(("P-Asserted-Identity", identity.clone()));
                headers.push(("Diversion", format!("{line_identity};reason=unconditional")));
                identity
            }
            _ => line_identity,
        };
        let caller_port = self.calls.get(&key).map(|c| c.port);
        let port = self.ports.allocate(caller_port)?;
        let session_id = self.random() >> 1;
        let (from_tag, call_id, branch) = (
            self.token(),
            format!("{}@denwa", self.token()),
            branch_from(self.random()),
        );
        let leg = OutsideLeg {
            request_uri: format!("sip:{}@{}", outside.number, account.domain),
            to: format!("<sip:{}@{}>", outside.number, account.domain),
            from,
            from_tag,
            call_id,
            contact,
            sent_by,
            headers,
            offer: sdp::offer(self.cfg.advertise, port, session_id),
            answered: false,
            account,
        };
        let request = leg.invite(1, &branch, None);
        let (dest, uri) = (leg.account.destination, leg.request_uri.clone());
        info!(%phone, number = %outside.number, line = %leg.account.line, %dest, "ringing an outside number through the provider");
        let id = self.start_leg(
            now,
            NewLeg {
                call: key,
                phone,
                dest,
                wire: request.wire,
                branch,
                port,
                session_id,
                outside: Some(leg),
            },
        )?;
        Some(LegStarted {
            leg: id,
            phone: phone.to_string(),
            contact: uri,
        })
    }

    /// A 401/407 to an outside leg's INVITE: answer it once with the line's
    /// credentials. False when the leg is not one, is ending, was challenged
    /// before (the provider refused the credentials, stale or not), or the
    /// challenge cannot be answered: then the leg has failed.
    pub(super) fn answer_challenge(&mut self, now: Now, id: LegId, challenge: &Response) -> bool {
        let branch = branch_from(self.random());
        let cnonce = self.token();
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(&id) else {
            return false;
        };
        let phone = leg.phone.clone();
        let ending = leg.ending;
        let Some(outside) = leg.outside.as_mut().filter(|_| !ending) else {
            return false;
        };
        let account = &outside.account;
        if outside.answered {
            warn!(%phone, line = %account.line, user = %account.auth_user, code = challenge.code,
                "the provider refused the line's credentials for an outside call (check the number's password)");
            return false;
        }
        let proxy = challenge.code == 407;
        let header = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let Some(ch) = auth::best_challenge(challenge.msg.headers_named(header)) else {
            warn!(%phone, code = challenge.code, "the provider's challenge has no digest we can answer");
            return false;
        };
        if let Some(realm) = &account.realm
            && &ch.realm != realm
        {
            warn!(%phone, challenged = %ch.realm, allowed = %realm, "challenged for another realm than the config allows: not answered");
            return false;
        }
        outside.answered = true;
        let value = auth::authorization(
            &ch,
            &account.auth_user,
            &account.password,
            "INVITE",
            &outside.request_uri,
            1,
            &cnonce,
        );
        let name = if proxy { "Proxy-Authorization" } else { "Authorization" };
        let cseq = leg.invite_cseq + 1;
        let request = outside.invite(cseq, &branch, Some((name, &value)));
        let Ok(tx) = ClientInvite::new(request.wire, timers, now.at) else {
            return false;
        };
        // The challenged transaction lives on until Timer D, to ACK a
        // retransmitted challenge; its branch still finds this leg.
        leg.invite = tx.invite().clone();
        leg.invite_cseq = cseq;
        leg.challenged = leg.tx.replace(tx);
        leg.challenged_branch = Some(std::mem::replace(&mut leg.branch, branch.clone()));
        debug!(%phone, algorithm = ?ch.algorithm, "answering the provider's challenge for an outside call");
        self.leg_by_branch.insert(branch, id);
        self.pump_leg(now, id);
        true
    }
}
