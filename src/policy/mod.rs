//! Routing policy: per-number rules, tried in order; the first whose `when`
//! matches the call decides what happens. Pure: the time of the call comes in
//! as data, and every decision carries a sentence saying why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

/// The compiled, immutable policy. A reload builds a new one; calls keep the
/// plan they started with.
#[derive(Debug)]
pub struct Policy {
    pub shop_name: String,
    pub timezone: TimeZone,
    /// By line name (`public`, `delivery`, …).
    pub numbers: BTreeMap<String, NumberPolicy>,
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
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Answer (after `answer_after` of ringing), play the prompt `repeat`
    /// times, hang up.
    Announce {
        prompt: PromptRef,
        repeat: u32,
        answer_after: Duration,
    },
}

/// A prompt by the name the owner wrote (a file in the prompts folder). The
/// policy only names it; the audio lives in media's prompt library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub name: Arc<str>,
    /// How long it plays once, for `check` and dry runs.
    pub duration: Duration,
}

/// Conditions on the time of the call, in the shop's time zone. Empty matches always.
#[derive(Debug, Default, Clone)]
pub struct When {
    pub days: Option<DaySet>,
    pub hours: Option<HourRange>,
}

/// A set of weekdays, e.g. "mon-fri" or "sat,sun".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySet(u8);

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

fn day_index(name: &str) -> Result<u8, String> {
    let n = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|(short, long)| n == *short || n == *long)
        .map(|i| i as u8)
        .ok_or_else(|| format!("{name:?} is not a day (use mon, tue, wed, thu, fri, sat, sun)"))
}

impl DaySet {
    pub fn parse(text: &str) -> Result<DaySet, String> {
        let mut bits = 0u8;
        for part in text.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a)?, day_index(b)?);
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day_index(part)?,
            }
        }
        Ok(DaySet(bits))
    }

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << (day.to_monday_zero_offset() as u8)) != 0
    }
}

/// Written back as the owner would: runs of days as ranges ("mon-fri",
/// "fri-mon" across the week's end), single days by name ("sat,sun").
impl std::fmt::Display for DaySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has = |d: usize| self.0 & (1 << (d % 7)) != 0;
        // Start after a missing day, so a run across Sunday stays whole.
        let Some(origin) = (0..7).find(|d| !has(*d)) else {
            return f.write_str("every day");
        };
        let mut runs = Vec::new();
        let mut d = origin + 1;
        while d < origin + 7 {
            if has(d) {
                let start = d;
                while has(d + 1) {
                    d += 1;
                }
                runs.push((start % 7, d % 7));
            }
            d += 1;
        }
        // Monday first; a run across Sunday holds Monday, so it leads.
        runs.sort_by_key(|&(start, end)| if start > end { 0 } else { start + 1 });
        let name = |d: usize| DAY_NAMES[d].0;
        let parts: Vec<String> = runs
            .into_iter()
            .map(|(start, end)| match (end + 7 - start) % 7 {
                0 => name(start).to_string(),
                1 => format!("{},{}", name(start), name(end)),
                _ => format!("{}-{}", name(start), name(end)),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A daily time window "HH:MM-HH:MM", start inclusive, end exclusive; may
/// cross midnight ("22:00-06:00").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    start: u16,
    end: u16,
}

fn minute_of_day(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time like \"09:30\"");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl HourRange {
    pub fn parse(text: &str) -> Result<HourRange, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a range like \"10:00-17:00\""))?;
        let (start, end) = (minute_of_day(a)?, minute_of_day(b)?);
        if start == end {
            return Err(format!("{text:?} is an empty range"));
        }
        Ok(HourRange { start, end })
    }

    pub fn contains(self, t: Time) -> bool {
        let m = t.hour() as u16 * 60 + t.minute() as u16;
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }
}

impl std::fmt::Display for HourRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
    }
}

/// What we know about a new inbound call when deciding.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    /// The dialled number or line name, as it arrived.
    pub dialled: &'a str,
    pub arrived_at: Timestamp,
}

/// The outcome of a decision.
#[derive(Debug, Clone)]
pub enum Decision {
    Route {
        line: String,
        action: Action,
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

impl Policy {
    /// Find the line for a dialled user part: its line name or its number.
    pub fn line_for(&self, dialled: &str) -> Option<&NumberPolicy> {
        self.numbers
            .get(dialled)
            .or_else(|| self.numbers.values().find(|n| n.number == dialled))
    }

    pub fn decide(&self, facts: &CallFacts) -> Decision {
        let Some(line) = self.line_for(facts.dialled) else {
            return Decision::UnknownNumber;
        };
        let local = facts.arrived_at.to_zoned(self.timezone.clone());
        let (day, time) = (local.weekday(), local.time());
        for (i, rule) in line.rules.iter().enumerate() {
            let day_ok = rule.when.days.is_none_or(|d| d.contains(day));
            let time_ok = rule.when.hours.is_none_or(|h| h.contains(time));
            if day_ok && time_ok {
                let condition = if rule.when.days.is_none() && rule.when.hours.is_none() {
                    "has no conditions".to_string()
                } else {
                    format!("matches {day:?} {}", local.strftime("%H:%M %Z"))
                };
                return Decision::Route {
                    line: line.name.clone(),
                    action: rule.action.clone(),
                    why: format!("{}: rule {} {condition}", line.name, i + 1),
                };
            }
        }
        Decision::NoRule {
            line: line.name.clone(),
            why: format!("{}: no rule matches {day:?} {}", line.name, local.strftime("%H:%M %Z")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> PromptRef {
        PromptRef {
            name: "p.wav".into(),
            duration: Duration::from_millis(20),
        }
    }

    fn announce(repeat: u32) -> Action {
        Action::Announce {
            prompt: prompt(),
            repeat,
            answer_after: Duration::ZERO,
        }
    }

    fn policy() -> Policy {
        let mut numbers = BTreeMap::new();
        numbers.insert(
            "public".to_string(),
            NumberPolicy {
                name: "public".into(),
                number: "0501110001".into(),
                label: "Public".into(),
                match_on: MatchOn::default(),
                rules: vec![
                    Rule {
                        when: When {
                            days: Some(DaySet::parse("mon-fri").unwrap()),
                            hours: Some(HourRange::parse("10:00-17:00").unwrap()),
                        },
                        action: announce(1),
                    },
                    Rule {
                        when: When::default(),
                        action: announce(2),
                    },
                ],
            },
        );
        Policy {
            shop_name: "test".into(),
            timezone: TimeZone::get("Asia/Tokyo").unwrap(),
            numbers,
        }
    }

    fn decide_at(when: &str, dialled: &str) -> Decision {
        let p = policy();
        let ts: Timestamp = when.parse().unwrap();
        p.decide(&CallFacts {
            dialled,
            arrived_at: ts,
        })
    }

    fn repeat_of(d: &Decision) -> u32 {
        match d {
            Decision::Route {
                action: Action::Announce { repeat, .. },
                ..
            } => *repeat,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn business_hours_in_shop_time_zone() {
        // 2026-11-23 is a Monday; 01:00 UTC is 10:00 in Tokyo.
        assert_eq!(repeat_of(&decide_at("2026-11-23T01:00:00Z", "public")), 1);
        // 00:59 UTC is 09:59 in Tokyo: falls through to the catch-all.
        assert_eq!(repeat_of(&decide_at("2026-11-23T00:59:00Z", "public")), 2);
        // 08:00 UTC is 17:00 Tokyo: end is exclusive.
        assert_eq!(repeat_of(&decide_at("2026-11-23T08:00:00Z", "public")), 2);
        // Saturday noon Tokyo.
        assert_eq!(repeat_of(&decide_at("2026-11-28T03:00:00Z", "public")), 2);
    }

    #[test]
    fn number_or_line_name_and_explanation() {
        let d = decide_at("2026-11-23T01:30:00Z", "0501110001");
        match d {
            Decision::Route { line, why, .. } => {
                assert_eq!(line, "public");
                assert!(why.contains("rule 1 matches Monday 10:30 JST"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide_at("2026-11-23T01:30:00Z", "nobody"),
            Decision::UnknownNumber
        ));
    }

    #[test]
    fn day_sets_and_ranges() {
        let d = DaySet::parse("fri-mon").unwrap();
        assert!(d.contains(Weekday::Sunday) && d.contains(Weekday::Monday) && !d.contains(Weekday::Tuesday));
        let d = DaySet::parse("sat, sunday").unwrap();
        assert!(d.contains(Weekday::Saturday) && d.contains(Weekday::Sunday) && !d.contains(Weekday::Friday));
        assert!(DaySet::parse("funday").is_err());
        for (written, shown) in [
            ("mon-fri", "mon-fri"),
            ("fri-mon", "fri-mon"),
            ("sat, sunday", "sat,sun"),
            ("mon,wed,fri", "mon,wed,fri"),
            ("sun,mon,tue,thu", "sun-tue,thu"),
            ("tue,sat", "tue,sat"),
            ("mon-sun", "every day"),
        ] {
            assert_eq!(DaySet::parse(written).unwrap().to_string(), shown, "{written}");
        }
        assert!(DaySet::parse("mo").is_err());
        let night = HourRange::parse("22:00-06:00").unwrap();
        assert!(night.contains(Time::constant(23, 0, 0, 0)) && night.contains(Time::constant(5, 59, 0, 0)));
        assert!(!night.contains(Time::constant(6, 0, 0, 0)));
        assert!(HourRange::parse("10:00-10:00").is_err());
        assert_eq!(night.to_string(), "22:00-06:00");
        assert!(HourRange::parse("9-17").is_err());
        assert!(
            HourRange::parse("00:00-24:00")
                .unwrap()
                .contains(Time::constant(23, 59, 0, 0))
        );
    }
}
