//! The conditions of a rule (`when`): time of day, weekdays, dates, public
//! holidays, the shop's closing days, who calls, the line's mode and load.
//! Each condition that fails says why, in words the owner recognises.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Zoned;
use jiff::civil::{Date, Time, Weekday};

use super::calendar::{ClosedDays, parse_ymd};
use super::caller::{CallerList, CallerPattern, NormalisedCaller};
use super::facts::{CallFacts, PhoneState};
use super::holidays;
use super::ics::Calendar;

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
    pub const ALL: DaySet = DaySet(0x7f);

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

    pub fn is_subset_of(self, other: DaySet) -> bool {
        self.0 & !other.0 == 0
    }
}

impl fmt::Display for DaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of consecutive days as "mon-fri", others listed.
        let mut parts = Vec::new();
        let mut d = 0;
        while d < 7 {
            if self.0 & (1 << d) == 0 {
                d += 1;
                continue;
            }
            let start = d;
            while d + 1 < 7 && self.0 & (1 << (d + 1)) != 0 {
                d += 1;
            }
            parts.push(match d - start {
                0 => DAY_NAMES[start].0.to_string(),
                1 => format!("{},{}", DAY_NAMES[start].0, DAY_NAMES[d].0),
                _ => format!("{}-{}", DAY_NAMES[start].0, DAY_NAMES[d].0),
            });
            d += 1;
        }
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
            return Err(format!(
                "{text:?} never matches: it starts where it ends (for all day, leave hours out)"
            ));
        }
        Ok(HourRange { start, end })
    }

    pub fn contains(self, t: Time) -> bool {
        self.contains_minute(t.hour() as u16 * 60 + t.minute() as u16)
    }

    fn contains_minute(self, m: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }
}

impl fmt::Display for HourRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Several daily windows; a time matches if it is in any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours(pub Vec<HourRange>);

impl Hours {
    pub fn contains(&self, t: Time) -> bool {
        self.0.iter().any(|r| r.contains(t))
    }

    /// Whether every minute of `self` is also in `other`.
    pub fn is_within(&self, other: &Hours) -> bool {
        (0..1440).all(|m| !self.0.iter().any(|r| r.contains_minute(m)) || other.0.iter().any(|r| r.contains_minute(m)))
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// Inclusive civil dates, "2026-12-29..2027-01-03" or a single day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSpan {
    pub first: Date,
    pub last: Date,
}

impl DateSpan {
    pub fn parse(text: &str) -> Result<DateSpan, String> {
        let (a, b) = text.split_once("..").unwrap_or((text, text));
        let (first, last) = (parse_ymd(a.trim())?, parse_ymd(b.trim())?);
        if last < first {
            return Err(format!(
                "{text:?} never matches: it ends before it starts (write the earlier date first)"
            ));
        }
        Ok(DateSpan { first, last })
    }

    pub fn contains(self, d: Date) -> bool {
        self.first <= d && d <= self.last
    }
}

impl fmt::Display for DateSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

/// Which public holidays the shop keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolidayRules {
    Japan,
}

impl HolidayRules {
    pub fn parse(text: &str) -> Result<HolidayRules, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "jp" | "japan" => Ok(HolidayRules::Japan),
            _ => Err(format!("{text:?}: only \"jp\" (Japan's public holidays) is known")),
        }
    }

    pub fn holiday(self, day: Date) -> Option<&'static str> {
        match self {
            HolidayRules::Japan => holidays::is_holiday(day),
        }
    }
}

/// When the shop is closed: its closing-days file and its calendar.
#[derive(Debug, Default)]
pub struct Closures {
    pub days: ClosedDays,
    pub calendar: Option<Calendar>,
}

impl Closures {
    /// Why the shop is closed at this moment, if it is.
    pub fn closed_at(&self, local: &Zoned) -> Option<String> {
        if let Some(span) = self.days.find(local.date()) {
            return Some(match &span.note {
                Some(note) => format!("a closing day ({note})"),
                None => "a closing day".to_string(),
            });
        }
        let calendar = self.calendar.as_ref()?;
        calendar
            .is_busy(local.timestamp(), local.time_zone())
            .map(|summary| format!("closed per the calendar ({summary})"))
    }
}

/// Who may match: patterns written in the rule and lists from files.
#[derive(Debug, Clone)]
pub struct CallerTest {
    pub patterns: Vec<CallerPattern>,
    /// (file name as written, its list).
    pub files: Vec<(String, Arc<CallerList>)>,
}

impl CallerTest {
    fn find(&self, caller: &NormalisedCaller) -> Option<String> {
        if let Some(p) = self.patterns.iter().find(|p| p.matches(caller)) {
            return Some(format!("matches {p}"));
        }
        self.files.iter().find_map(|(name, list)| {
            list.find(caller)
                .map(|(p, line)| format!("matches {p} ({name} line {line})"))
        })
    }
}

impl CallerTest {
    /// The patterns and file names, "090*|sales.txt".
    pub fn sources(&self) -> String {
        let mut parts: Vec<String> = self.patterns.iter().map(|p| p.to_string()).collect();
        parts.extend(self.files.iter().map(|(name, _)| name.clone()));
        parts.join("|")
    }
}

impl fmt::Display for CallerTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "caller {}", self.sources())
    }
}

/// `repeat_caller = { times = 3, within = "10m" }`: this call is at least
/// the `times`th from the same caller to this number within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatCaller {
    pub times: u32,
    pub within: Duration,
}

/// Conditions of one rule. All that are given must hold; empty matches always.
#[derive(Debug, Default, Clone)]
pub struct When {
    pub days: Option<DaySet>,
    pub hours: Option<Hours>,
    pub dates: Vec<DateSpan>,
    /// Some(true): only on public holidays; Some(false): never on one.
    pub holiday: Option<(bool, HolidayRules)>,
    /// Some(true): only when the shop is closed; Some(false): only when open.
    pub closed: Option<(bool, Arc<Closures>)>,
    pub caller: Option<CallerTest>,
    pub anonymous: Option<bool>,
    /// The line's mode, "normal" when none is set.
    pub mode: Option<String>,
    pub active_calls_at_least: Option<u32>,
    pub shop_calls_at_least: Option<u32>,
    /// Some(true): every phone of the rule's ring step is busy or unregistered.
    pub phones_busy: Option<bool>,
    pub repeat_caller: Option<RepeatCaller>,
}

/// The shop-local moment of a call, worked out once per decision.
pub struct Moment {
    pub local: Zoned,
}

impl When {
    pub fn is_always(&self) -> bool {
        self.days.is_none_or(|d| d == DaySet::ALL)
            && self.hours.is_none()
            && self.dates.is_empty()
            && self.holiday.is_none()
            && self.closed.is_none()
            && self.caller.is_none()
            && self.anonymous.is_none()
            && self.mode.is_none()
            && self.active_calls_at_least.is_none_or(|n| n == 0)
            && self.shop_calls_at_least.is_none_or(|n| n == 0)
            && self.phones_busy.is_none()
            && self.repeat_caller.is_none()
    }

    /// Whether this rule matches every call `later` matches, so that a later
    /// rule with those conditions can never be reached. Conservative: only
    /// conditions it can compare count.
    pub fn covers(&self, later: &When) -> bool {
        let days = match (self.days, later.days) {
            (None, _) => true,
            (Some(a), Some(b)) => b.is_subset_of(a),
            (Some(a), None) => a == DaySet::ALL,
        };
        let hours = match (&self.hours, &later.hours) {
            (None, _) => true,
            (Some(a), Some(b)) => b.is_within(a),
            (Some(_), None) => false,
        };
        let dates = self.dates.is_empty()
            || (!later.dates.is_empty()
                && later
                    .dates
                    .iter()
                    .all(|l| self.dates.iter().any(|s| s.first <= l.first && l.last <= s.last)));
        fn same<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || a == b
        }
        let holiday = same(&self.holiday.map(|h| h.0), &later.holiday.map(|h| h.0));
        let closed = same(&self.closed.as_ref().map(|c| c.0), &later.closed.as_ref().map(|c| c.0));
        let at_least = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (None, _) => true,
            (Some(a), Some(b)) => a <= b,
            (Some(a), None) => a == 0,
        };
        days && hours
            && dates
            && holiday
            && closed
            && self.caller.is_none()
            && same(&self.anonymous, &later.anonymous)
            && same(&self.mode, &later.mode)
            && at_least(self.active_calls_at_least, later.active_calls_at_least)
            && at_least(self.shop_calls_at_least, later.shop_calls_at_least)
            && same(&self.phones_busy, &later.phones_busy)
            && self.repeat_caller.is_none()
    }

    /// None if every condition holds, else the first that does not, as a
    /// sentence: "it is a public holiday (Culture Day)".
    pub fn failure(&self, facts: &CallFacts, at: &Moment, line: &str, ring_phones: &[String]) -> Option<String> {
        let local = &at.local;
        let date = local.date();
        if let Some(days) = self.days
            && !days.contains(local.weekday())
        {
            return Some(format!("it is {}", weekday_name(local.weekday())));
        }
        if let Some(hours) = &self.hours
            && !hours.contains(local.time())
        {
            return Some(format!("it is {}", local.strftime("%H:%M %Z")));
        }
        if !self.dates.is_empty() && !self.dates.iter().any(|d| d.contains(date)) {
            return Some(format!("{date} is not in {}", join(&self.dates)));
        }
        if let Some((want, rules)) = self.holiday {
            match (want, rules.holiday(date)) {
                (true, None) => return Some("it is not a public holiday".into()),
                (false, Some(name)) => return Some(format!("it is a public holiday ({name})")),
                _ => {}
            }
        }
        if let Some((want, closures)) = &self.closed {
            match (want, closures.closed_at(local)) {
                (true, None) => return Some("the shop is open".into()),
                (false, Some(why)) => return Some(format!("it is {why}")),
                _ => {}
            }
        }
        if let Some(test) = &self.caller
            && test.find(&facts.caller).is_none()
        {
            return Some(format!("the caller ({}) is not in {}", facts.caller, test.sources()));
        }
        if let Some(want) = self.anonymous
            && facts.caller.is_anonymous() != want
        {
            return Some(if want {
                format!("the caller shows a number ({})", facts.caller)
            } else {
                format!("the caller has no number ({})", facts.caller)
            });
        }
        if let Some(want) = &self.mode {
            let current = facts.modes.current(line, facts.arrived_at).unwrap_or("normal");
            if current != want {
                return Some(format!("the mode of {line} is {current}"));
            }
        }
        if let Some(n) = self.active_calls_at_least
            && facts.active_calls < n
        {
            return Some(format!(
                "{} call(s) in progress on this number, fewer than {n}",
                facts.active_calls
            ));
        }
        if let Some(n) = self.shop_calls_at_least
            && facts.shop_calls < n
        {
            return Some(format!(
                "{} call(s) in progress in the shop, fewer than {n}",
                facts.shop_calls
            ));
        }
        if let Some(want) = self.phones_busy {
            let free: Vec<&str> = ring_phones
                .iter()
                .filter(|p| facts.phone_state(p) == PhoneState::Free)
                .map(|p| p.as_str())
                .collect();
            match (want, free.is_empty()) {
                (true, false) => return Some(format!("{} is free", free.join(", "))),
                (false, true) => return Some("every phone is busy or unregistered".into()),
                _ => {}
            }
        }
        if let Some(repeat) = self.repeat_caller {
            let count = facts.calls_within(repeat.within);
            if count < repeat.times {
                return Some(format!(
                    "this is call {count} from this caller within {}, fewer than {}",
                    describe_duration(repeat.within),
                    repeat.times
                ));
            }
        }
        None
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

pub fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

pub fn describe_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The owner's words for a rule's conditions: "mon-fri 10:00-17:00, not holiday".
impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let time: Vec<String> = self
            .days
            .map(|d| d.to_string())
            .into_iter()
            .chain(self.hours.as_ref().map(|h| h.to_string()))
            .collect();
        if !time.is_empty() {
            parts.push(time.join(" "));
        }
        if !self.dates.is_empty() {
            parts.push(join(&self.dates));
        }
        if let Some((h, _)) = self.holiday {
            parts.push(if h { "holiday" } else { "not holiday" }.into());
        }
        if let Some((c, _)) = &self.closed {
            parts.push(if *c { "closed" } else { "open" }.into());
        }
        if let Some(c) = &self.caller {
            parts.push(c.to_string());
        }
        if let Some(a) = self.anonymous {
            parts.push(if a { "anonymous" } else { "caller shows number" }.into());
        }
        if let Some(m) = &self.mode {
            parts.push(format!("mode {m}"));
        }
        if let Some(n) = self.active_calls_at_least {
            parts.push(format!("{n}+ calls on the number"));
        }
        if let Some(n) = self.shop_calls_at_least {
            parts.push(format!("{n}+ calls in the shop"));
        }
        if let Some(b) = self.phones_busy {
            parts.push(if b { "phones busy" } else { "a phone free" }.into());
        }
        if let Some(r) = self.repeat_caller {
            parts.push(format!("{}+ calls within {}", r.times, describe_duration(r.within)));
        }
        if parts.is_empty() {
            f.write_str("always")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}
