//! Routing policy: per-number rules, tried in order; the first whose `when`
//! matches the call decides what happens. Pure: the time of the call comes in
//! as data, and every decision carries a sentence saying why.

pub mod calendar;
pub mod caller;
pub mod facts;
pub mod holidays;
pub mod ics;
pub mod line_error;
pub mod plan;
pub mod rrule;
pub mod week;
pub mod when;

#[cfg(test)]
mod decide_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Zoned;
use jiff::tz::TimeZone;

pub use caller::{CallerHeaders, NormalisedCaller, NumberPlan};
pub use facts::{CallFacts, ModeSetting, Modes, PhoneState};
pub use plan::{Action, Plan, PromptRef, RingOrder, RingStep, Ringback, VoicemailStep};
pub use when::{Closures, DaySet, HolidayRules, HourRange, Hours, When};

/// The compiled, immutable policy. A reload builds a new one; calls keep the
/// plan they started with.
#[derive(Debug)]
pub struct Policy {
    pub shop_name: String,
    pub timezone: TimeZone,
    /// By line name (`public`, `delivery`, …).
    pub numbers: BTreeMap<String, NumberPolicy>,
    pub shop: Shop,
}

/// Shop-wide facts the rules refer to.
#[derive(Debug, Default)]
pub struct Shop {
    /// How callers' numbers are written here (country code).
    pub number_plan: NumberPlan,
    /// The public holidays the shop keeps, if any.
    pub holidays: Option<HolidayRules>,
    pub closures: Arc<Closures>,
    /// The mode names the owner declared (`[shop] modes`); empty: any.
    pub modes: Vec<String>,
}

#[derive(Debug)]
pub struct NumberPolicy {
    pub name: String,
    pub number: String,
    pub label: String,
    pub match_on: MatchOn,
    pub rules: Vec<Rule>,
}

/// Which parts of an inbound INVITE may identify this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchOn {
    /// The Request-URI user is the unguessable Contact user we registered.
    pub contact: bool,
    /// The Request-URI user is the number (or the line name).
    pub request_uri: bool,
    /// The To user is the number (or the line name).
    pub to: bool,
}

impl Default for MatchOn {
    fn default() -> Self {
        MatchOn {
            contact: true,
            request_uri: true,
            to: true,
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub when: When,
    pub plan: Plan,
}

/// The outcome of a decision.
#[derive(Debug, Clone)]
pub enum Decision {
    Route {
        line: String,
        plan: Plan,
        why: String,
    },
    /// No number by that name: 404.
    UnknownNumber,
    /// The number exists but no rule matched: 480.
    NoRule {
        line: String,
        why: String,
    },
}

/// A rule that did not match, and the first of its conditions that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based, as the owner counts rules.
    pub rule: usize,
    /// The rule's conditions in the owner's words.
    pub conditions: String,
    pub reason: String,
}

/// How a decision came about, rule by rule.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub line: String,
    /// The call's time in the shop's zone.
    pub local: Zoned,
    /// The matching rule (1-based) and its conditions.
    pub matched: Option<(usize, String)>,
    pub skipped: Vec<Skipped>,
}

impl Explanation {
    /// One line: "public: rule 2 (always) matched; rule 1 (mon-fri
    /// 10:00-17:00) not: it is a public holiday (Culture Day)".
    pub fn why(&self) -> String {
        let mut text = format!("{}: ", self.line);
        match &self.matched {
            Some((rule, conditions)) => text.push_str(&format!("rule {rule} ({conditions}) matched")),
            None => text.push_str(&format!(
                "no rule matched at {}",
                self.local.strftime("%a %Y-%m-%d %H:%M %Z")
            )),
        }
        for s in &self.skipped {
            text.push_str(&format!("; rule {} ({}) not: {}", s.rule, s.conditions, s.reason));
        }
        text
    }
}

impl Policy {
    /// Find the line for a dialled user part: its line name or its number.
    pub fn line_for(&self, dialled: &str) -> Option<&NumberPolicy> {
        self.numbers
            .get(dialled)
            .or_else(|| self.numbers.values().find(|n| n.number == dialled))
    }

    /// The caller as rules see it, from the request's header values.
    pub fn caller_of(&self, headers: &CallerHeaders) -> NormalisedCaller {
        self.shop.number_plan.caller(headers)
    }

    /// Try the line's rules in order; None if the number is unknown.
    pub fn explain(&self, facts: &CallFacts) -> Option<(Explanation, Option<&Rule>)> {
        let line = self.line_for(facts.dialled)?;
        let moment = when::Moment {
            local: facts.arrived_at.to_zoned(self.timezone.clone()),
        };
        let mut skipped = Vec::new();
        for (i, rule) in line.rules.iter().enumerate() {
            let conditions = rule.when.to_string();
            match rule.when.failure(facts, &moment, &line.name, rule.plan.ring_phones()) {
                Some(reason) => skipped.push(Skipped {
                    rule: i + 1,
                    conditions,
                    reason,
                }),
                None => {
                    let explanation = Explanation {
                        line: line.name.clone(),
                        local: moment.local,
                        matched: Some((i + 1, conditions)),
                        skipped,
                    };
                    return Some((explanation, Some(rule)));
                }
            }
        }
        let explanation = Explanation {
            line: line.name.clone(),
            local: moment.local,
            matched: None,
            skipped,
        };
        Some((explanation, None))
    }

    pub fn decide(&self, facts: &CallFacts) -> Decision {
        match self.explain(facts) {
            None => Decision::UnknownNumber,
            Some((e, Some(rule))) => Decision::Route {
                line: e.line.clone(),
                plan: rule.plan.clone(),
                why: e.why(),
            },
            Some((e, None)) => Decision::NoRule {
                line: e.line.clone(),
                why: e.why(),
            },
        }
    }
}
