//! The coming week at a glance: what a call would get, hour by hour, with
//! holidays and closing days marked. For `denwa route --week`.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use super::{CallFacts, Policy};

/// A run of hours on one day with the same outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourSpan {
    /// Local hours [from, to), 0..=24.
    pub from: u8,
    pub to: u8,
    /// The matching rule (1-based), None if none matched.
    pub rule: Option<usize>,
    /// The plan in words, or why nothing matched.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayPlan {
    pub date: Date,
    pub holiday: Option<&'static str>,
    /// Why the shop is closed at noon that day, if it is.
    pub closed: Option<String>,
    pub spans: Vec<HourSpan>,
}

/// The instant a local wall-clock time names (the later one in a DST gap).
fn instant(date: Date, hour: u8, zone: &TimeZone) -> Option<Timestamp> {
    let civil = date.to_datetime(Time::new(hour as i8, 0, 0, 0).ok()?);
    zone.to_ambiguous_timestamp(civil).compatible().ok()
}

/// Seven days from the local day of `facts.arrived_at`, each hour decided
/// with the other facts as given.
pub fn week(policy: &Policy, facts: &CallFacts) -> Option<Vec<DayPlan>> {
    policy.line_for(facts.dialled)?;
    let zone = &policy.timezone;
    let first = facts.arrived_at.to_zoned(zone.clone()).date();
    let mut days = Vec::new();
    for offset in 0..7 {
        let date = first.checked_add(jiff::Span::new().days(offset)).ok()?;
        let mut spans: Vec<HourSpan> = Vec::new();
        for hour in 0..24u8 {
            let at = instant(date, hour, zone)?;
            let hour_facts = CallFacts {
                arrived_at: at,
                ..facts.clone()
            };
            let (explanation, rule) = policy.explain(&hour_facts)?;
            let matched = explanation.matched.as_ref().map(|(n, _)| *n);
            let outcome = match rule {
                Some(rule) => rule.plan.describe(),
                None => "no rule (480)".to_string(),
            };
            match spans.last_mut() {
                Some(last) if last.rule == matched && last.outcome == outcome => last.to = hour + 1,
                _ => spans.push(HourSpan {
                    from: hour,
                    to: hour + 1,
                    rule: matched,
                    outcome,
                }),
            }
        }
        let noon = instant(date, 12, zone)?.to_zoned(zone.clone());
        days.push(DayPlan {
            date,
            holiday: policy.shop.holidays.and_then(|h| h.holiday(date)),
            closed: policy.shop.closures.closed_at(&noon),
            spans,
        });
    }
    Some(days)
}
