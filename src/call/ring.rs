//! The ring step: staff phones rung together or in turn, the first to
//! answer bridged, the others cancelled; no answer, every phone busy or none
//! reachable → the plan's next step.

use std::collections::BTreeMap;
use std::time::Instant;

use super::*;
use crate::policy::{RingOrder, RingStep, Ringback};

/// A ring step in progress.
pub(super) struct Ringing {
    step: RingStep,
    /// In turn: the phones not rung yet.
    waiting: VecDeque<String>,
    /// Legs still ringing (or trying), by id: when each started.
    live: BTreeMap<LegId, Instant>,
    /// When the step began.
    pub(super) started: Instant,
}

impl Call {
    pub(super) fn start_ringing(&mut self, now: Now, step: RingStep) {
        let (first, waiting): (Vec<String>, VecDeque<String>) = match step.order {
            RingOrder::Simultaneous => (step.phones.clone(), VecDeque::new()),
            RingOrder::Sequential => {
                let mut all: VecDeque<String> = step.phones.iter().cloned().collect();
                let first = all.pop_front().into_iter().collect();
                (first, all)
            }
        };
        self.timers.push((Timer::RingTimeout, now.at + step.timeout));
        if step.order == RingOrder::Sequential {
            self.timers.push((Timer::NextPhone, now.at + step.per_phone));
        }
        let early_media = step.ringback != Ringback::Ringing;
        self.ring = Some(Ringing {
            step,
            waiting,
            live: BTreeMap::new(),
            started: now.at,
        });
        if early_media {
            self.start_early_media();
        }
        self.actions.push_back(CallAction::RingPhones { phones: first });
    }

    pub(super) fn legs_started(&mut self, now: Now, legs: Vec<LegStarted>) {
        let Some(ring) = self.ring.as_mut() else {
            // Too late (the caller left meanwhile): stop them again.
            for leg in legs {
                self.actions.push_back(CallAction::CancelLeg(leg.leg));
            }
            return;
        };
        self.endpoints_open += legs.len();
        for leg in legs {
            ring.live.insert(leg.leg, now.at);
            self.record.legs.push(LegRecord {
                phone: leg.phone,
                contact: leg.contact,
                result: "ringing".into(),
                ring_ms: 0,
                audio: None,
            });
            self.leg_ids.push(leg.leg);
        }
        self.maybe_give_up(now);
    }

    pub(super) fn leg_ringing(&mut self, leg: LegId) {
        if self.ring.as_ref().is_some_and(|r| r.live.contains_key(&leg)) {
            self.send_ringing();
        }
    }

    pub(super) fn leg_answered(&mut self, now: Now, leg: LegId) {
        let live = self.ring.as_ref().and_then(|r| r.live.get(&leg).copied());
        let Some(started) = live.filter(|_| self.phase == Phase::Ringing) else {
            // Another phone won, or the caller left: this one is hung up.
            self.set_leg_result(leg, "answered too late", None);
            self.actions.push_back(CallAction::HangupLeg(leg));
            return;
        };
        self.set_leg_result(leg, "answered", Some(now.at.saturating_duration_since(started)));
        if let Some(ring) = self.ring.as_mut() {
            ring.live.remove(&leg);
        }
        self.cancel_all_legs(now, "cancelled");
        self.ring = None;
        self.timers
            .retain(|(t, _)| !matches!(t, Timer::RingTimeout | Timer::NextPhone));
        // The relay takes over the caller's stream where the ringback left it.
        self.stop_early_media();
        let phone = self.leg_record_mut(leg).map(|r| r.phone.clone());
        self.record.answered_by = phone;
        self.phase = Phase::Bridged;
        self.bridged = Some(leg);
        self.record.answered_at = Some(now.wall);
        self.actions.push_back(CallAction::Answer);
        if self.media.is_some() {
            self.actions.push_back(CallAction::Bridge(leg));
        }
    }

    pub(super) fn leg_failed(&mut self, now: Now, leg: LegId, status: u16) {
        let Some(started) = self.ring.as_mut().and_then(|r| r.live.remove(&leg)) else {
            return;
        };
        let result = match status {
            0 | 408 => "no-answer".to_string(),
            486 | 600 => "busy".into(),
            603 => "declined".into(),
            487 => "cancelled".into(),
            480 | 404 => "unreachable".into(),
            other => format!("failed {other}"),
        };
        self.set_leg_result(leg, &result, Some(now.at.saturating_duration_since(started)));
        let in_turn = self
            .ring
            .as_ref()
            .is_some_and(|r| r.step.order == RingOrder::Sequential && r.live.is_empty());
        if in_turn {
            self.ring_next_phone(now);
        } else {
            self.maybe_give_up(now);
        }
    }

    /// In turn: the next phone (or give up when none is left).
    pub(super) fn ring_next_phone(&mut self, now: Now) {
        if self.phase != Phase::Ringing {
            return;
        }
        self.cancel_all_legs(now, "no-answer");
        let Some(ring) = self.ring.as_mut() else { return };
        self.timers.retain(|(t, _)| *t != Timer::NextPhone);
        match ring.waiting.pop_front() {
            Some(next) => {
                self.timers.push((Timer::NextPhone, now.at + ring.step.per_phone));
                self.actions.push_back(CallAction::RingPhones { phones: vec![next] });
            }
            None => self.ring_failed(now),
        }
    }

    pub(super) fn ring_timed_out(&mut self, now: Now) {
        if self.phase == Phase::Ringing && self.ring.is_some() {
            self.cancel_all_legs(now, "no-answer");
            self.ring_failed(now);
        }
    }

    /// Nobody is ringing and nobody is left to ring: fall back.
    fn maybe_give_up(&mut self, now: Now) {
        let Some(ring) = self.ring.as_ref() else { return };
        if !ring.live.is_empty() {
            return;
        }
        if ring.step.order == RingOrder::Sequential && !ring.waiting.is_empty() {
            self.ring_next_phone(now);
        } else {
            self.ring_failed(now);
        }
    }

    fn ring_failed(&mut self, now: Now) {
        self.ring = None;
        self.timers
            .retain(|(t, _)| !matches!(t, Timer::RingTimeout | Timer::NextPhone));
        if self.record.legs.is_empty() {
            self.skipped.push("ring (no staff phone reachable)");
        }
        self.stop_early_media();
        self.next_step(now);
    }

    /// 183 with our SDP and the ringback looped, when the caller's offer
    /// lets us send (a late offer gets 180: its answer would need PRACK).
    fn start_early_media(&mut self) {
        if self.early_media || self.ringing_sent {
            return;
        }
        let (Some(media), Some(prompt)) = (self.media.clone(), self.ringback.clone()) else {
            return;
        };
        if !media.direction.we_send() {
            return;
        }
        self.early_media = true;
        // The caller hears our ringback: a 180 now could make it play its own.
        self.ringing_sent = true;
        self.actions.push_back(CallAction::Progress);
        self.actions.push_back(CallAction::PlayRingback { media, prompt });
    }

    /// The ring step is over: the ringback stops (what follows replaces it).
    fn stop_early_media(&mut self) {
        if self.early_media {
            self.early_media = false;
            self.actions.push_back(CallAction::StopRingback);
        }
    }

    /// CANCEL every leg still ringing, noting why and how long it rang.
    pub(super) fn cancel_all_legs(&mut self, now: Now, result: &str) {
        let Some(ring) = self.ring.as_mut() else { return };
        let live: Vec<(LegId, Instant)> = std::mem::take(&mut ring.live).into_iter().collect();
        for (leg, started) in live {
            self.set_leg_result(leg, result, Some(now.at.saturating_duration_since(started)));
            self.actions.push_back(CallAction::CancelLeg(leg));
        }
    }

    fn set_leg_result(&mut self, leg: LegId, result: &str, rang: Option<Duration>) {
        if let Some(r) = self.leg_record_mut(leg) {
            r.result = result.to_string();
            if let Some(rang) = rang {
                r.ring_ms = rang.as_millis() as u64;
            }
        }
    }

    pub(super) fn leg_record_mut(&mut self, leg: LegId) -> Option<&mut LegRecord> {
        let index = self.leg_ids.iter().position(|l| *l == leg)?;
        self.record.legs.get_mut(index)
    }
}
