//! Closing times from an iCalendar (.ics) file, as Google Calendar, Apple
//! Calendar and Thunderbird export them: VEVENTs with all-day or timed
//! starts, DTEND or DURATION, recurrence (see [`super::rrule`]), EXDATE,
//! RDATE and RECURRENCE-ID overrides. Cancelled events are ignored.
//!
//! Time zones named by TZID come from jiff's bundled database (the file's
//! VTIMEZONE blocks are not read); floating times and all-day events are in
//! the time zone of the question, normally the shop's.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::line_error::LineError;
use super::rrule::{RecurrenceRule, parse_basic_date, parse_basic_time};

pub type IcsError = LineError;

/// A DTSTART, DTEND, EXDATE, RDATE or RECURRENCE-ID value as written.
#[derive(Debug, Clone, PartialEq)]
enum IcsTime {
    Date(Date),
    Floating(DateTime),
    Utc(Timestamp),
    Zoned(DateTime, TimeZone),
}

impl IcsTime {
    fn is_date(&self) -> bool {
        matches!(self, IcsTime::Date(_))
    }

    /// The civil time this names in `frame`.
    fn civil_in(&self, frame: &TimeZone) -> DateTime {
        match self {
            IcsTime::Date(d) => d.to_datetime(jiff::civil::Time::midnight()),
            IcsTime::Floating(dt) => *dt,
            IcsTime::Utc(ts) => ts.to_zoned(frame.clone()).datetime(),
            IcsTime::Zoned(dt, tz) => instant(*dt, tz).to_zoned(frame.clone()).datetime(),
        }
    }
}

/// The instant of a civil time in a zone; in a DST gap or fold, the
/// "compatible" choice that calendar apps make too.
fn instant(civil: DateTime, zone: &TimeZone) -> Timestamp {
    zone.to_ambiguous_timestamp(civil)
        .compatible()
        .unwrap_or_else(|_| civil.to_zoned(TimeZone::UTC).map_or(Timestamp::MIN, |z| z.timestamp()))
}

#[derive(Debug, Clone, PartialEq)]
enum Length {
    /// Neither DTEND nor DURATION: a day for all-day events, else an instant.
    Default,
    End(IcsTime),
    /// DURATION: days are calendar days, the rest exact.
    Nominal {
        days: i64,
        seconds: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub summary: String,
    pub uid: Option<String>,
    /// The line of its BEGIN:VEVENT.
    pub line: usize,
    start: IcsTime,
    length: Length,
    rule: Option<RecurrenceRule>,
    exceptions: Vec<IcsTime>,
    extra_starts: Vec<IcsTime>,
}

impl Event {
    /// The zone occurrences are made in: the start's own, or the question's.
    fn frame(&self, asked: &TimeZone) -> TimeZone {
        match &self.start {
            IcsTime::Utc(_) => TimeZone::UTC,
            IcsTime::Zoned(_, tz) => tz.clone(),
            _ => asked.clone(),
        }
    }

    fn is_excepted(&self, start: DateTime, frame: &TimeZone) -> bool {
        self.exceptions.iter().any(|e| match e {
            IcsTime::Date(d) => *d == start.date(),
            other => other.civil_in(frame) == start,
        })
    }

    /// The occurrence starting at civil `start`, as instants [from, to).
    fn interval(&self, start: DateTime, frame: &TimeZone) -> (Timestamp, Timestamp) {
        let from = instant(start, frame);
        let at_midnight_after = |days: i64| {
            let day = start.date().checked_add(days.days()).unwrap_or(start.date());
            instant(day.to_datetime(jiff::civil::Time::midnight()), frame)
        };
        let to = match &self.length {
            Length::Default if self.start.is_date() => at_midnight_after(1),
            Length::Default => from,
            Length::End(IcsTime::Date(end)) if self.start.is_date() => {
                let first = self.start.civil_in(frame).date();
                at_midnight_after(i64::from((*end - first).get_days()))
            }
            Length::End(end) => {
                let exact =
                    instant(end.civil_in(frame), frame).duration_since(instant(self.start.civil_in(frame), frame));
                from.checked_add(exact).unwrap_or(from)
            }
            Length::Nominal { days, seconds } => {
                let civil = start.checked_add(days.days()).unwrap_or(start);
                instant(civil, frame)
                    .checked_add(SignedDuration::from_secs(*seconds))
                    .unwrap_or(from)
            }
        };
        (from, to)
    }

    /// Whether an occurrence overlaps [from, to).
    pub fn overlaps(&self, from: Timestamp, to: Timestamp, asked: &TimeZone) -> bool {
        let frame = self.frame(asked);
        let first = self.start.civil_in(&frame);
        // Occurrences starting after the end of the question cannot overlap;
        // a day's margin covers offsets and DST.
        let horizon = to.to_zoned(frame.clone()).datetime();
        let horizon = horizon.checked_add(1.day()).unwrap_or(horizon);
        let mut starts = match &self.rule {
            Some(rule) => rule.expand(first, rule.until.as_ref().map(|u| u.in_zone(&frame)), horizon),
            None => vec![first],
        };
        starts.extend(self.extra_starts.iter().map(|t| t.civil_in(&frame)));
        starts.into_iter().filter(|s| !self.is_excepted(*s, &frame)).any(|s| {
            let (a, b) = self.interval(s, &frame);
            // An event with no length (DTSTART only) takes no time.
            a < b && a < to && from < b
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calendar {
    events: Vec<Event>,
}

impl Calendar {
    pub fn parse(text: &str) -> Result<Calendar, IcsError> {
        parse_calendar(text)
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The first event with an occurrence overlapping [from, to).
    pub fn busy_between(&self, from: Timestamp, to: Timestamp, zone: &TimeZone) -> Option<&Event> {
        self.events.iter().find(|e| e.overlaps(from, to, zone))
    }

    /// The summary of an event happening at `at`; all-day and floating
    /// events are read in `zone`.
    pub fn is_busy(&self, at: Timestamp, zone: &TimeZone) -> Option<&str> {
        let just_after = at.checked_add(SignedDuration::from_nanos(1)).unwrap_or(at);
        self.busy_between(at, just_after, zone).map(|e| e.summary.as_str())
    }

    /// The summary of an event taking any part of `day` in `zone`.
    pub fn busy_on(&self, day: Date, zone: &TimeZone) -> Option<&str> {
        let midnight = |d: Date| instant(d.to_datetime(jiff::civil::Time::midnight()), zone);
        let next = day.tomorrow().unwrap_or(day);
        self.busy_between(midnight(day), midnight(next), zone)
            .map(|e| e.summary.as_str())
    }
}

/// Logical lines after unfolding (RFC 5545 §3.1), each with the number of
/// the physical line it starts on.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(continued), Some((_, last))) => last.push_str(continued),
            _ if raw.trim().is_empty() => {}
            _ => lines.push((i + 1, raw.to_string())),
        }
    }
    lines
}

struct ContentLine<'a> {
    name: String,
    params: Vec<(String, &'a str)>,
    value: &'a str,
}

impl ContentLine<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// `NAME;PARAM=value;PARAM="quoted:value":VALUE`.
fn split_content_line(line: &str) -> Option<ContentLine<'_>> {
    let mut in_quotes = false;
    let mut colon = None;
    let mut semicolons = Vec::new();
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => semicolons.push(i),
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon?;
    let head_end = semicolons.first().copied().unwrap_or(colon);
    let mut params = Vec::new();
    let mut bounds = semicolons.clone();
    bounds.push(colon);
    for pair in bounds.windows(2) {
        let param = &line[pair[0] + 1..pair[1]];
        let (n, v) = param.split_once('=')?;
        params.push((n.to_ascii_uppercase(), v.trim_matches('"')));
    }
    Some(ContentLine {
        name: line[..head_end].to_ascii_uppercase(),
        params,
        value: &line[colon + 1..],
    })
}

fn unescape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Time zone names Outlook writes instead of IANA ones, for the places a
/// Japanese shop is likely to meet.
const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("China Standard Time", "Asia/Shanghai"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("GMT Standard Time", "Europe/London"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Eastern Standard Time", "America/New_York"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("UTC", "UTC"),
];

fn time_zone(name: &str) -> Result<TimeZone, String> {
    if let Ok(tz) = TimeZone::get(name) {
        return Ok(tz);
    }
    if let Some((_, iana)) = WINDOWS_ZONES.iter().find(|(w, _)| *w == name) {
        return TimeZone::get(iana).map_err(|e| e.to_string());
    }
    // Evolution writes "/freeassociation.sourceforge.net/Tzfile/Asia/Tokyo".
    let parts: Vec<&str> = name.rsplitn(3, '/').collect();
    if parts.len() >= 2
        && let Ok(tz) = TimeZone::get(&format!("{}/{}", parts[1], parts[0]))
    {
        return Ok(tz);
    }
    Err(format!("unknown time zone {name:?} (use a name like Asia/Tokyo)"))
}

/// One date or date-time value of a property, honouring VALUE and TZID.
fn parse_time(value: &str, line: &ContentLine) -> Result<IcsTime, String> {
    let bad = || {
        format!(
            "{}:{value} is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS)",
            line.name
        )
    };
    let value = value.trim();
    if line.param("VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE")) || value.len() == 8 {
        return parse_basic_date(value).map(IcsTime::Date).ok_or_else(bad);
    }
    let (day, time) = value.split_once('T').ok_or_else(bad)?;
    let (time, utc) = time.strip_suffix('Z').map_or((time, false), |t| (t, true));
    let civil = parse_basic_date(day)
        .ok_or_else(bad)?
        .to_datetime(parse_basic_time(time).ok_or_else(bad)?);
    if utc {
        return Ok(IcsTime::Utc(instant(civil, &TimeZone::UTC)));
    }
    match line.param("TZID") {
        Some(name) => Ok(IcsTime::Zoned(civil, time_zone(name)?)),
        None => Ok(IcsTime::Floating(civil)),
    }
}

/// `P1D`, `PT1H30M`, `P2W`, `P1DT12H`: (calendar days, exact seconds).
fn parse_duration(value: &str) -> Result<(i64, i64), String> {
    let bad = || format!("DURATION:{value} is not a duration like P1D or PT2H30M");
    let rest = value.trim().strip_prefix('+').unwrap_or(value.trim());
    let rest = rest.strip_prefix('P').ok_or_else(bad)?;
    let (mut days, mut seconds, mut in_time, mut digits) = (0i64, 0i64, false, String::new());
    for c in rest.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if c == 'T' && digits.is_empty() {
            in_time = true;
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        match (c, in_time) {
            ('W', false) => days += 7 * n,
            ('D', false) => days += n,
            ('H', true) => seconds += 3600 * n,
            ('M', true) => seconds += 60 * n,
            ('S', true) => seconds += n,
            _ => return Err(bad()),
        }
    }
    if !digits.is_empty() || rest.is_empty() {
        return Err(bad());
    }
    Ok((days, seconds))
}

#[derive(Default)]
struct EventDraft {
    line: usize,
    summary: Option<String>,
    uid: Option<String>,
    start: Option<IcsTime>,
    end: Option<IcsTime>,
    duration: Option<(i64, i64)>,
    rule: Option<RecurrenceRule>,
    exceptions: Vec<IcsTime>,
    extra_starts: Vec<IcsTime>,
    cancelled: bool,
    recurrence_id: Option<IcsTime>,
}

impl EventDraft {
    fn take_property(&mut self, line: &ContentLine) -> Result<(), String> {
        let times = || {
            line.value
                .split(',')
                .map(|v| parse_time(v, line))
                .collect::<Result<Vec<_>, _>>()
        };
        match line.name.as_str() {
            "SUMMARY" => self.summary = Some(unescape_text(line.value)),
            "UID" => self.uid = Some(line.value.trim().to_string()),
            "DTSTART" => self.start = Some(parse_time(line.value, line)?),
            "DTEND" => self.end = Some(parse_time(line.value, line)?),
            "DURATION" => self.duration = Some(parse_duration(line.value)?),
            "RRULE" => self.rule = Some(RecurrenceRule::parse(line.value).map_err(|e| format!("RRULE: {e}"))?),
            "EXDATE" => self.exceptions.extend(times()?),
            // RDATE;VALUE=PERIOD is rare in exports; only its start is used.
            "RDATE" => self.extra_starts.extend(
                line.value
                    .split(',')
                    .map(|v| parse_time(v.split('/').next().unwrap_or(v), line))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            "STATUS" => self.cancelled = line.value.trim().eq_ignore_ascii_case("CANCELLED"),
            "RECURRENCE-ID" => self.recurrence_id = Some(parse_time(line.value, line)?),
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<(Event, bool, Option<IcsTime>), IcsError> {
        let start = self
            .start
            .ok_or_else(|| LineError::new(self.line, "this event has no DTSTART"))?;
        let length = match (self.end, self.duration) {
            (Some(_), Some(_)) => return Err(LineError::new(self.line, "this event has both DTEND and DURATION")),
            (Some(end), None) => Length::End(end),
            (None, Some((days, seconds))) => Length::Nominal { days, seconds },
            (None, None) => Length::Default,
        };
        let event = Event {
            summary: self.summary.unwrap_or_else(|| "(untitled event)".into()),
            uid: self.uid,
            line: self.line,
            start,
            length,
            rule: self.rule,
            exceptions: self.exceptions,
            extra_starts: self.extra_starts,
        };
        Ok((event, self.cancelled, self.recurrence_id))
    }
}

fn parse_calendar(text: &str) -> Result<Calendar, IcsError> {
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut draft: Option<EventDraft> = None;
    let mut finished = Vec::new();
    let mut seen_calendar = false;
    for (number, line) in unfold(text) {
        let content = split_content_line(&line)
            .ok_or_else(|| LineError::new(number, format!("{line:?} is not a NAME:value line")))?;
        match content.name.as_str() {
            "BEGIN" => {
                let component = content.value.trim().to_ascii_uppercase();
                if stack.is_empty() && component != "VCALENDAR" {
                    return Err(LineError::new(number, "expected BEGIN:VCALENDAR"));
                }
                seen_calendar = true;
                if component == "VEVENT" && stack.len() == 1 {
                    draft = Some(EventDraft {
                        line: number,
                        ..EventDraft::default()
                    });
                }
                stack.push((component, number));
            }
            "END" => {
                let component = content.value.trim().to_ascii_uppercase();
                match stack.pop() {
                    Some((open, _)) if open == component => {}
                    Some((open, opened)) => {
                        return Err(LineError::new(
                            number,
                            format!("END:{component} but BEGIN:{open} on line {opened} is still open"),
                        ));
                    }
                    None => return Err(LineError::new(number, format!("END:{component} without a BEGIN"))),
                }
                if component == "VEVENT"
                    && stack.len() == 1
                    && let Some(done) = draft.take()
                {
                    finished.push(done.finish()?);
                }
            }
            _ if stack.last().is_some_and(|(c, _)| c == "VEVENT") => {
                if let Some(draft) = draft.as_mut() {
                    draft.take_property(&content).map_err(|m| LineError::new(number, m))?;
                }
            }
            _ => {}
        }
    }
    if let Some((open, opened)) = stack.pop() {
        return Err(LineError::new(opened, format!("BEGIN:{open} is never closed")));
    }
    if !seen_calendar {
        return Err(LineError::new(1, "not an iCalendar file (no BEGIN:VCALENDAR)"));
    }
    Ok(Calendar {
        events: apply_overrides(finished),
    })
}

/// A RECURRENCE-ID event replaces one occurrence of the event with its UID:
/// that occurrence is dropped from the series, and the override stands on
/// its own (unless it was cancelled). Cancelled events are dropped.
fn apply_overrides(drafts: Vec<(Event, bool, Option<IcsTime>)>) -> Vec<Event> {
    let replaced: Vec<(Option<String>, IcsTime)> = drafts
        .iter()
        .filter_map(|(e, _, rid)| rid.clone().map(|r| (e.uid.clone(), r)))
        .collect();
    drafts
        .into_iter()
        .filter(|(_, cancelled, _)| !cancelled)
        .map(|(mut event, _, rid)| {
            if rid.is_none() {
                let mine = replaced.iter().filter(|(uid, _)| uid.is_some() && *uid == event.uid);
                event.exceptions.extend(mine.map(|(_, r)| r.clone()));
            }
            event
        })
        .collect()
}

#[cfg(test)]
#[path = "ics_tests.rs"]
mod tests;
