//! Checks across rules: a rule an earlier one always pre-empts, dates that
//! never come on the days asked for, mode names nothing tests.

use std::ops::Range;

use jiff::ToSpan;

use super::Checker;
use crate::policy::{Rule, Shop};

/// Rules of one number, each with where it is written (None if it did not compile).
pub(super) fn check_rules(ck: &mut Checker, key: &str, rules: &[(Range<usize>, Option<&Rule>)], shop: &Shop) {
    for (j, (span, rule)) in rules.iter().enumerate() {
        let Some(rule) = rule else { continue };
        let earlier = rules[..j]
            .iter()
            .enumerate()
            .find_map(|(i, (_, r))| r.filter(|r| r.when.covers(&rule.when)).map(|r| (i, r)));
        if let Some((i, earlier)) = earlier {
            ck.error(
                span,
                format!("{key}.rules[{}]", j + 1),
                format!(
                    "can never match: rule {} ({}) comes first and matches every call this one would; move this rule above it, or narrow rule {}",
                    i + 1,
                    earlier.when,
                    i + 1
                ),
            );
            continue;
        }
        if let Some(why) = never_matches(rule, shop) {
            ck.error(
                span,
                format!("{key}.rules[{}].when", j + 1),
                format!("can never match: {why}"),
            );
        }
    }
}

/// Dates are few enough to try one by one: does any pass the day-level conditions?
fn never_matches(rule: &Rule, shop: &Shop) -> Option<String> {
    let w = &rule.when;
    if w.dates.is_empty() {
        return None;
    }
    const LIMIT: i64 = 3 * 366;
    for span in &w.dates {
        let mut day = span.first;
        let mut n = 0;
        while day <= span.last && n < LIMIT {
            let day_ok = w.days.is_none_or(|d| d.contains(day.weekday()));
            let holiday_ok = w
                .holiday
                .is_none_or(|(want, rules)| rules.holiday(day).is_some() == want);
            // Only the closing-days file is by whole days; a calendar may close part of one.
            let closed_ok = match &w.closed {
                Some((want, c)) if c.calendar.is_none() => c.days.contains(day) == *want,
                _ => true,
            };
            if day_ok && holiday_ok && closed_ok {
                return None;
            }
            day = match day.checked_add(1.day()) {
                Ok(d) => d,
                Err(_) => break,
            };
            n += 1;
        }
        if n >= LIMIT {
            return None;
        }
    }
    let _ = shop;
    Some(format!(
        "no day in {} is also {}; fix the dates or the other conditions",
        w.dates.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        w
    ))
}
