//! RFC 5545 recurrence rules, the parts calendar apps write: FREQ (DAILY,
//! WEEKLY, MONTHLY, YEARLY), INTERVAL, COUNT, UNTIL, BYDAY (with ordinals
//! like 2MO or -1FR), BYMONTHDAY, BYMONTH, BYSETPOS and WKST.
//!
//! Expansion works in civil time (the event's own time zone), one period
//! (day, week, month, year) at a time, so it is bounded by the horizon asked
//! for even when a rule never matches (e.g. every February 30).

use jiff::ToSpan;
use jiff::civil::{Date, DateTime, Weekday, date};
use jiff::{Timestamp, tz::TimeZone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// UNTIL as written: its meaning depends on the event's time zone.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    Date(Date),
    Floating(DateTime),
    Utc(Timestamp),
}

impl Until {
    /// The last civil start allowed, in the time zone occurrences are made in.
    pub fn in_zone(&self, zone: &TimeZone) -> DateTime {
        match self {
            Until::Date(d) => d.at(23, 59, 59, 999_999_999),
            Until::Floating(dt) => *dt,
            Until::Utc(ts) => ts.to_zoned(zone.clone()).datetime(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecurrenceRule {
    pub frequency: Frequency,
    pub interval: u32,
    pub count: Option<u32>,
    pub until: Option<Until>,
    /// Weekday with an optional ordinal (1 = first, -1 = last).
    pub by_day: Vec<(Option<i16>, Weekday)>,
    pub by_month_day: Vec<i8>,
    pub by_month: Vec<i8>,
    pub by_set_pos: Vec<i32>,
    pub week_start: Weekday,
}

pub fn parse_weekday(text: &str) -> Option<Weekday> {
    Some(match text {
        "MO" => Weekday::Monday,
        "TU" => Weekday::Tuesday,
        "WE" => Weekday::Wednesday,
        "TH" => Weekday::Thursday,
        "FR" => Weekday::Friday,
        "SA" => Weekday::Saturday,
        "SU" => Weekday::Sunday,
        _ => return None,
    })
}

/// `YYYYMMDD`, `YYYYMMDDTHHMMSS` or the same with `Z`.
pub fn parse_until(text: &str) -> Result<Until, String> {
    let bad = || format!("UNTIL={text} is not a date or date-time");
    let (text, utc) = match text.strip_suffix('Z') {
        Some(t) => (t, true),
        None => (text, false),
    };
    let (day, time) = text.split_once('T').map_or((text, None), |(d, t)| (d, Some(t)));
    let day = parse_basic_date(day).ok_or_else(bad)?;
    match time {
        None if !utc => Ok(Until::Date(day)),
        None => Err(bad()),
        Some(time) => {
            let civil = day.to_datetime(parse_basic_time(time).ok_or_else(bad)?);
            if utc {
                Ok(Until::Utc(
                    civil.to_zoned(TimeZone::UTC).map_err(|_| bad())?.timestamp(),
                ))
            } else {
                Ok(Until::Floating(civil))
            }
        }
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse().ok())?
}

/// `YYYYMMDD`.
pub fn parse_basic_date(text: &str) -> Option<Date> {
    if text.len() != 8 {
        return None;
    }
    Date::new(number(&text[..4])?, number(&text[4..6])?, number(&text[6..])?).ok()
}

/// `HHMMSS`.
pub fn parse_basic_time(text: &str) -> Option<jiff::civil::Time> {
    if text.len() != 6 {
        return None;
    }
    // A leap second (60) is read as the last second of the minute.
    let second = number::<i8>(&text[4..])?.min(59);
    jiff::civil::Time::new(number(&text[..2])?, number(&text[2..4])?, second, 0).ok()
}

fn list<T>(value: &str, item: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    value.split(',').map(|v| item(v.trim())).collect()
}

fn signed_in(text: &str, max: i32) -> Option<i32> {
    let n: i32 = text.strip_prefix('+').unwrap_or(text).parse().ok()?;
    (n != 0 && n.abs() <= max).then_some(n)
}

impl RecurrenceRule {
    pub fn parse(text: &str) -> Result<RecurrenceRule, String> {
        let mut frequency = None;
        let mut rule = RecurrenceRule {
            frequency: Frequency::Daily,
            interval: 1,
            count: None,
            until: None,
            by_day: Vec::new(),
            by_month_day: Vec::new(),
            by_month: Vec::new(),
            by_set_pos: Vec::new(),
            week_start: Weekday::Monday,
        };
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?} has no value"))?;
            let key = key.to_ascii_uppercase();
            let value = value.to_ascii_uppercase();
            let bad = || format!("{key}={value} is not understood");
            match key.as_str() {
                "FREQ" => {
                    frequency = Some(match value.as_str() {
                        "DAILY" => Frequency::Daily,
                        "WEEKLY" => Frequency::Weekly,
                        "MONTHLY" => Frequency::Monthly,
                        "YEARLY" => Frequency::Yearly,
                        other => {
                            return Err(format!(
                                "FREQ={other} is not supported (DAILY, WEEKLY, MONTHLY, YEARLY)"
                            ));
                        }
                    })
                }
                "INTERVAL" => rule.interval = number(&value).filter(|n| *n > 0).ok_or_else(bad)?,
                "COUNT" => rule.count = Some(number(&value).ok_or_else(bad)?),
                "UNTIL" => rule.until = Some(parse_until(&value)?),
                "BYDAY" => {
                    rule.by_day = list(&value, |v| {
                        let split = v.len().checked_sub(2)?;
                        let weekday = parse_weekday(v.get(split..)?)?;
                        let ordinal = &v[..split];
                        let ordinal = if ordinal.is_empty() {
                            None
                        } else {
                            Some(signed_in(ordinal, 53)? as i16)
                        };
                        Some((ordinal, weekday))
                    })
                    .ok_or_else(bad)?
                }
                "BYMONTHDAY" => rule.by_month_day = list(&value, |v| Some(signed_in(v, 31)? as i8)).ok_or_else(bad)?,
                "BYMONTH" => {
                    rule.by_month =
                        list(&value, |v| number::<i8>(v).filter(|m| (1..=12).contains(m))).ok_or_else(bad)?
                }
                "BYSETPOS" => rule.by_set_pos = list(&value, |v| signed_in(v, 366)).ok_or_else(bad)?,
                "WKST" => rule.week_start = parse_weekday(&value).ok_or_else(bad)?,
                "BYHOUR" | "BYMINUTE" | "BYSECOND" | "BYWEEKNO" | "BYYEARDAY" => {
                    return Err(format!("{key} is not supported"));
                }
                // Unknown extension parts (X-…) do not change the dates.
                _ => {}
            }
        }
        rule.frequency = frequency.ok_or("FREQ is missing")?;
        let ordinals = rule.by_day.iter().any(|(n, _)| n.is_some());
        if ordinals && matches!(rule.frequency, Frequency::Daily | Frequency::Weekly) {
            return Err("BYDAY with a number (like 2MO) needs FREQ=MONTHLY or YEARLY".into());
        }
        if rule.count.is_some() && rule.until.is_some() {
            return Err("COUNT and UNTIL cannot both be given".into());
        }
        Ok(rule)
    }

    /// Occurrence starts from `start` (always the first, as RFC 5545 says)
    /// up to and including `horizon`, honouring COUNT and `until`.
    pub fn expand(&self, start: DateTime, until: Option<DateTime>, horizon: DateTime) -> Vec<DateTime> {
        let last = until.map_or(horizon, |u| u.min(horizon));
        let mut out = Vec::new();
        if start > last {
            return out;
        }
        out.push(start);
        let time = start.time();
        let interval = i64::from(self.interval);
        for period in 0i64.. {
            let Some((period_first, days)) = self.period(start.date(), period * interval) else {
                break;
            };
            if period_first > last.date() {
                break;
            }
            for day in self.select_positions(days) {
                let at = day.to_datetime(time);
                if at <= start {
                    continue;
                }
                if at > last || self.count.is_some_and(|c| out.len() as u64 >= u64::from(c)) {
                    return out;
                }
                out.push(at);
            }
        }
        out
    }

    /// The first day of the `steps`-th period after the one holding `start`,
    /// and the candidate days in it, sorted. None past the calendar's end.
    fn period(&self, start: Date, steps: i64) -> Option<(Date, Vec<Date>)> {
        Some(match self.frequency {
            Frequency::Daily => {
                let day = start.checked_add(steps.days()).ok()?;
                (day, self.day_passes_filters(day).then_some(day).into_iter().collect())
            }
            Frequency::Weekly => {
                let back = (7 + start.weekday().to_monday_zero_offset() - self.week_start.to_monday_zero_offset()) % 7;
                let first = start
                    .checked_sub(i64::from(back).days())
                    .ok()?
                    .checked_add((steps * 7).days())
                    .ok()?;
                let days: Vec<Date> = (0..7)
                    .filter_map(|i| first.checked_add(i.days()).ok())
                    .filter(|d| {
                        let weekday_ok = if self.by_day.is_empty() {
                            d.weekday() == start.weekday()
                        } else {
                            self.by_day.iter().any(|(_, w)| *w == d.weekday())
                        };
                        weekday_ok && (self.by_month.is_empty() || self.by_month.contains(&d.month()))
                    })
                    .collect();
                (first, days)
            }
            Frequency::Monthly => {
                let first = date(start.year(), start.month(), 1).checked_add(steps.months()).ok()?;
                let days = if self.by_month.is_empty() || self.by_month.contains(&first.month()) {
                    self.days_in_month(first, start.day())
                } else {
                    Vec::new()
                };
                (first, days)
            }
            Frequency::Yearly => {
                let first = date(start.year(), 1, 1).checked_add(steps.years()).ok()?;
                (first, self.days_in_year(first, start))
            }
        })
    }

    fn day_passes_filters(&self, day: Date) -> bool {
        (self.by_month.is_empty() || self.by_month.contains(&day.month()))
            && (self.by_month_day.is_empty() || self.by_month_day.iter().any(|m| month_day_is(day, *m)))
            && (self.by_day.is_empty() || self.by_day.iter().any(|(_, w)| *w == day.weekday()))
    }

    /// Candidate days of the month starting `first`; `default_day` is
    /// DTSTART's day, used when neither BYDAY nor BYMONTHDAY is given.
    fn days_in_month(&self, first: Date, default_day: i8) -> Vec<Date> {
        let last = first.last_of_month();
        let mut days: Vec<Date> = if !self.by_day.is_empty() {
            let days = weekdays_in_span(&self.by_day, first, last);
            days.into_iter()
                .filter(|d| self.by_month_day.is_empty() || self.by_month_day.iter().any(|m| month_day_is(*d, *m)))
                .collect()
        } else if !self.by_month_day.is_empty() {
            self.by_month_day
                .iter()
                .filter_map(|m| resolve_month_day(first, *m))
                .collect()
        } else {
            // A month without that day (the 31st, February 30) is skipped.
            Date::new(first.year(), first.month(), default_day)
                .into_iter()
                .collect()
        };
        days.sort();
        days.dedup();
        days
    }

    fn days_in_year(&self, first: Date, start: Date) -> Vec<Date> {
        let mut days: Vec<Date> = if !self.by_month.is_empty() {
            self.by_month
                .iter()
                .flat_map(|m| self.days_in_month(date(first.year(), *m, 1), start.day()))
                .collect()
        } else if !self.by_day.is_empty() {
            // Ordinals count within the whole year here.
            weekdays_in_span(&self.by_day, first, date(first.year(), 12, 31))
                .into_iter()
                .filter(|d| self.by_month_day.is_empty() || self.by_month_day.iter().any(|m| month_day_is(*d, *m)))
                .collect()
        } else if !self.by_month_day.is_empty() {
            (1..=12)
                .flat_map(|m| self.days_in_month(date(first.year(), m, 1), start.day()))
                .collect()
        } else {
            Date::new(first.year(), start.month(), start.day())
                .into_iter()
                .collect()
        };
        days.sort();
        days.dedup();
        days
    }

    fn select_positions(&self, days: Vec<Date>) -> Vec<Date> {
        if self.by_set_pos.is_empty() {
            return days;
        }
        let len = days.len() as i32;
        let mut picked: Vec<Date> = self
            .by_set_pos
            .iter()
            .filter_map(|&pos| {
                let index = if pos > 0 { pos - 1 } else { len + pos };
                (0..len).contains(&index).then(|| days[index as usize])
            })
            .collect();
        picked.sort();
        picked.dedup();
        picked
    }
}

/// Whether `day` is day `n` of its month, counting from the end when negative.
fn month_day_is(day: Date, n: i8) -> bool {
    resolve_month_day(day.first_of_month(), n) == Some(day)
}

fn resolve_month_day(first: Date, n: i8) -> Option<Date> {
    let length = first.days_in_month();
    let day = if n > 0 { n } else { length + 1 + n };
    (1..=length)
        .contains(&day)
        .then(|| date(first.year(), first.month(), day))
}

/// Days in `first..=last` named by BYDAY: every such weekday, or with an
/// ordinal the nth from the start (or from the end when negative).
fn weekdays_in_span(by_day: &[(Option<i16>, Weekday)], first: Date, last: Date) -> Vec<Date> {
    let mut days = Vec::new();
    for &(ordinal, weekday) in by_day {
        let first_such = first
            .checked_add(
                i64::from((7 + weekday.to_monday_zero_offset() - first.weekday().to_monday_zero_offset()) % 7).days(),
            )
            .expect("within a year");
        let all = std::iter::successors(Some(first_such), |d| d.checked_add(7.days()).ok()).take_while(|d| *d <= last);
        match ordinal {
            None => days.extend(all),
            Some(n) if n > 0 => days.extend(all.skip(n as usize - 1).take(1)),
            Some(n) => {
                let all: Vec<Date> = all.collect();
                days.extend(all.len().checked_sub(n.unsigned_abs() as usize).map(|i| all[i]));
            }
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(text: &str) -> DateTime {
        text.parse().unwrap()
    }

    /// Expansions from RFC 5545 §3.8.5.3 (times dropped where they are all
    /// the same), plus the rule's edge cases.
    #[test]
    fn rfc_5545_examples() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            // (DTSTART, RRULE, horizon, expected dates)
            (
                "1997-09-02T09:00",
                "FREQ=DAILY;COUNT=10",
                "2000-01-01",
                &[
                    "1997-09-02",
                    "1997-09-03",
                    "1997-09-04",
                    "1997-09-05",
                    "1997-09-06",
                    "1997-09-07",
                    "1997-09-08",
                    "1997-09-09",
                    "1997-09-10",
                    "1997-09-11",
                ],
            ),
            (
                "1997-09-02T09:00",
                "FREQ=DAILY;INTERVAL=10;COUNT=5",
                "2000-01-01",
                &["1997-09-02", "1997-09-12", "1997-09-22", "1997-10-02", "1997-10-12"],
            ),
            (
                "1997-09-02T09:00",
                "FREQ=DAILY;INTERVAL=2",
                "1997-09-09",
                &["1997-09-02", "1997-09-04", "1997-09-06", "1997-09-08"],
            ),
            (
                "1997-09-02T09:00",
                "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR",
                "2000-01-01",
                &[
                    "1997-09-02",
                    "1997-09-03",
                    "1997-09-05",
                    "1997-09-15",
                    "1997-09-17",
                    "1997-09-19",
                    "1997-09-29",
                    "1997-10-01",
                    "1997-10-03",
                    "1997-10-13",
                    "1997-10-15",
                    "1997-10-17",
                    "1997-10-27",
                    "1997-10-29",
                    "1997-10-31",
                    "1997-11-10",
                    "1997-11-12",
                    "1997-11-14",
                    "1997-11-24",
                    "1997-11-26",
                    "1997-11-28",
                    "1997-12-08",
                    "1997-12-10",
                    "1997-12-12",
                    "1997-12-22",
                ],
            ),
            (
                "1997-09-05T09:00",
                "FREQ=MONTHLY;COUNT=10;BYDAY=1FR",
                "2000-01-01",
                &[
                    "1997-09-05",
                    "1997-10-03",
                    "1997-11-07",
                    "1997-12-05",
                    "1998-01-02",
                    "1998-02-06",
                    "1998-03-06",
                    "1998-04-03",
                    "1998-05-01",
                    "1998-06-05",
                ],
            ),
            (
                "1997-09-07T09:00",
                "FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU",
                "2000-01-01",
                &[
                    "1997-09-07",
                    "1997-09-28",
                    "1997-11-02",
                    "1997-11-30",
                    "1998-01-04",
                    "1998-01-25",
                    "1998-03-01",
                    "1998-03-29",
                    "1998-05-03",
                    "1998-05-31",
                ],
            ),
            (
                "1997-09-22T09:00",
                "FREQ=MONTHLY;COUNT=6;BYDAY=-2MO",
                "2000-01-01",
                &[
                    "1997-09-22",
                    "1997-10-20",
                    "1997-11-17",
                    "1997-12-22",
                    "1998-01-19",
                    "1998-02-16",
                ],
            ),
            (
                "1997-09-28T09:00",
                "FREQ=MONTHLY;BYMONTHDAY=-3",
                "1998-02-28",
                &[
                    "1997-09-28",
                    "1997-10-29",
                    "1997-11-28",
                    "1997-12-29",
                    "1998-01-29",
                    "1998-02-26",
                ],
            ),
            (
                "1997-09-02T09:00",
                "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15",
                "2000-01-01",
                &[
                    "1997-09-02",
                    "1997-09-15",
                    "1997-10-02",
                    "1997-10-15",
                    "1997-11-02",
                    "1997-11-15",
                    "1997-12-02",
                    "1997-12-15",
                    "1998-01-02",
                    "1998-01-15",
                ],
            ),
            (
                "1997-06-10T09:00",
                "FREQ=YEARLY;COUNT=10;BYMONTH=6,7",
                "2010-01-01",
                &[
                    "1997-06-10",
                    "1997-07-10",
                    "1998-06-10",
                    "1998-07-10",
                    "1999-06-10",
                    "1999-07-10",
                    "2000-06-10",
                    "2000-07-10",
                    "2001-06-10",
                    "2001-07-10",
                ],
            ),
            (
                "1997-09-02T09:00",
                "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
                "2000-12-31",
                &[
                    "1997-09-02",
                    "1998-02-13",
                    "1998-03-13",
                    "1998-11-13",
                    "1999-08-13",
                    "2000-10-13",
                ],
            ),
            (
                "1997-03-13T09:00",
                "FREQ=YEARLY;BYMONTH=3;BYDAY=TH",
                "1999-12-31",
                &[
                    "1997-03-13",
                    "1997-03-20",
                    "1997-03-27",
                    "1998-03-05",
                    "1998-03-12",
                    "1998-03-19",
                    "1998-03-26",
                    "1999-03-04",
                    "1999-03-11",
                    "1999-03-18",
                    "1999-03-25",
                ],
            ),
            (
                "1997-05-19T09:00",
                "FREQ=YEARLY;BYDAY=20MO",
                "1999-12-31",
                &["1997-05-19", "1998-05-18", "1999-05-17"],
            ),
            (
                "1996-11-05T09:00",
                "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
                "2005-01-01",
                &["1996-11-05", "2000-11-07", "2004-11-02"],
            ),
            // The RFC's list leaves out DTSTART (a Monday, not the last
            // workday); its own text says DTSTART is always the first.
            (
                "1997-09-29T09:00",
                "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                "1998-03-31",
                &[
                    "1997-09-29",
                    "1997-09-30",
                    "1997-10-31",
                    "1997-11-28",
                    "1997-12-31",
                    "1998-01-30",
                    "1998-02-27",
                    "1998-03-31",
                ],
            ),
            (
                "1997-08-05T09:00",
                "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
                "2000-01-01",
                &["1997-08-05", "1997-08-10", "1997-08-19", "1997-08-24"],
            ),
            (
                "1997-08-05T09:00",
                "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
                "2000-01-01",
                &["1997-08-05", "1997-08-17", "1997-08-19", "1997-08-31"],
            ),
            (
                "2007-01-15T09:00",
                "FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5",
                "2010-01-01",
                &["2007-01-15", "2007-01-30", "2007-02-15", "2007-03-15", "2007-03-30"],
            ),
            // Every month on the 31st: short months are skipped.
            (
                "2026-01-31T10:00",
                "FREQ=MONTHLY;COUNT=4",
                "2030-01-01",
                &["2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31"],
            ),
            // February 29th, yearly: leap years only.
            (
                "2024-02-29T10:00",
                "FREQ=YEARLY",
                "2033-01-01",
                &["2024-02-29", "2028-02-29", "2032-02-29"],
            ),
            // Never matches after DTSTART: the horizon still ends it.
            (
                "2026-01-01T10:00",
                "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
                "2100-01-01",
                &["2026-01-01"],
            ),
            // Weekdays only, the shop's regular closing: DAILY with a filter.
            (
                "2026-06-01T00:00",
                "FREQ=DAILY;BYDAY=SA,SU;UNTIL=20260614",
                "2030-01-01",
                &["2026-06-01", "2026-06-06", "2026-06-07", "2026-06-13", "2026-06-14"],
            ),
            // UNTIL is inclusive; the horizon cuts an endless rule.
            (
                "2026-06-01T09:00",
                "FREQ=WEEKLY;UNTIL=20260615T090000",
                "2030-01-01",
                &["2026-06-01", "2026-06-08", "2026-06-15"],
            ),
            (
                "2026-06-01T09:00",
                "FREQ=WEEKLY",
                "2026-06-15T08:59",
                &["2026-06-01", "2026-06-08"],
            ),
        ];
        for (start, rule, horizon, want) in cases {
            let parsed = RecurrenceRule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            let until = parsed.until.as_ref().map(|u| u.in_zone(&TimeZone::UTC));
            let horizon = if horizon.len() == 10 {
                dt(&format!("{horizon}T23:59"))
            } else {
                dt(horizon)
            };
            let got: Vec<String> = parsed
                .expand(dt(start), until, horizon)
                .iter()
                .map(|d| d.date().to_string())
                .collect();
            assert_eq!(got, *want, "{rule}");
        }
    }

    #[test]
    fn occurrences_keep_the_start_time() {
        let rule = RecurrenceRule::parse("FREQ=DAILY;COUNT=2").unwrap();
        let got = rule.expand(dt("2026-06-01T13:30"), None, dt("2026-12-31T00:00"));
        assert_eq!(got, [dt("2026-06-01T13:30"), dt("2026-06-02T13:30")]);
    }

    #[test]
    fn rejected_rules_say_why() {
        let cases: &[(&str, &str)] = &[
            ("COUNT=3", "FREQ is missing"),
            (
                "FREQ=HOURLY",
                "FREQ=HOURLY is not supported (DAILY, WEEKLY, MONTHLY, YEARLY)",
            ),
            ("FREQ=DAILY;BYHOUR=9", "BYHOUR is not supported"),
            (
                "FREQ=WEEKLY;BYDAY=2MO",
                "BYDAY with a number (like 2MO) needs FREQ=MONTHLY or YEARLY",
            ),
            ("FREQ=MONTHLY;BYDAY=XX", "BYDAY=XX is not understood"),
            ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY=32 is not understood"),
            ("FREQ=YEARLY;BYMONTH=13", "BYMONTH=13 is not understood"),
            ("FREQ=DAILY;INTERVAL=0", "INTERVAL=0 is not understood"),
            (
                "FREQ=DAILY;COUNT=2;UNTIL=20260101",
                "COUNT and UNTIL cannot both be given",
            ),
            (
                "FREQ=DAILY;UNTIL=2026-01-01",
                "UNTIL=2026-01-01 is not a date or date-time",
            ),
        ];
        for &(rule, want) in cases {
            assert_eq!(RecurrenceRule::parse(rule).unwrap_err(), want, "{rule}");
        }
        // Lower case and extensions are accepted.
        assert!(RecurrenceRule::parse("freq=weekly;byday=mo;X-NAME=1").is_ok());
    }
}
