//! Japanese public holidays, computed from the Act on National Holidays
//! (国民の祝日に関する法律) and the special laws that moved or added days.
//!
//! Three kinds of day off come out of the law:
//! - the named holidays (国民の祝日), each with the years its rule applied;
//! - substitute holidays (振替休日): a named holiday on a Sunday makes the next
//!   day off (until 2006 only the Monday, from 2007 the next day that is not
//!   itself a named holiday);
//! - citizens' holidays (国民の休日, from 1986): a day that is not a named
//!   holiday but lies between two of them (until 2006 not on a Sunday or a
//!   substitute holiday).
//!
//! The equinox days are fixed each February by the Cabinet from the National
//! Astronomical Observatory's ephemeris; the standard approximation used here
//! agrees with it for 1980–2099, which is the range supported.
//!
//! Checked against PyPI `holidays` 0.109 (tests/data): every date and name of
//! 2000–2099 agrees, and (ad hoc, not committed) every date of 1980–1999. The
//! package derives the equinoxes from a year-mod-4 table rather than this
//! formula, and the two agree through 2099.

use std::ops::RangeInclusive;

use jiff::civil::{Date, Weekday, date};

/// Years for which the rules below (and the equinox formula) hold.
pub const SUPPORTED_YEARS: RangeInclusive<i16> = 1980..=2099;

pub const SUBSTITUTE_HOLIDAY: &str = "Substitute Holiday";
pub const CITIZENS_HOLIDAY: &str = "Citizens' Holiday";

/// Where a named holiday falls in a given year.
#[derive(Clone, Copy)]
enum DayRule {
    Fixed {
        month: i8,
        day: i8,
    },
    /// The nth Monday of the month (the "Happy Monday" system, from 2000).
    NthMonday {
        month: i8,
        nth: i8,
    },
    VernalEquinox,
    AutumnalEquinox,
}

struct NamedHoliday {
    name: &'static str,
    rule: DayRule,
    first_year: i16,
    last_year: i16,
}

const fn fixed(name: &'static str, month: i8, day: i8, years: (i16, i16)) -> NamedHoliday {
    NamedHoliday {
        name,
        rule: DayRule::Fixed { month, day },
        first_year: years.0,
        last_year: years.1,
    }
}

const fn nth_monday(name: &'static str, month: i8, nth: i8, years: (i16, i16)) -> NamedHoliday {
    NamedHoliday {
        name,
        rule: DayRule::NthMonday { month, nth },
        first_year: years.0,
        last_year: years.1,
    }
}

const ALWAYS: (i16, i16) = (i16::MIN, i16::MAX);

const NAMED_HOLIDAYS: &[NamedHoliday] = &[
    fixed("New Year's Day", 1, 1, ALWAYS),
    fixed("Coming of Age Day", 1, 15, (i16::MIN, 1999)),
    nth_monday("Coming of Age Day", 1, 2, (2000, i16::MAX)),
    fixed("Foundation Day", 2, 11, ALWAYS),
    fixed("Emperor's Birthday", 2, 23, (2020, i16::MAX)),
    NamedHoliday {
        name: "Vernal Equinox Day",
        rule: DayRule::VernalEquinox,
        first_year: i16::MIN,
        last_year: i16::MAX,
    },
    // Emperor Shōwa's birthday, then Greenery Day, then Shōwa Day.
    fixed("Emperor's Birthday", 4, 29, (i16::MIN, 1988)),
    fixed("Greenery Day", 4, 29, (1989, 2006)),
    fixed("Showa Day", 4, 29, (2007, i16::MAX)),
    fixed("Constitution Day", 5, 3, ALWAYS),
    fixed("Greenery Day", 5, 4, (2007, i16::MAX)),
    fixed("Children's Day", 5, 5, ALWAYS),
    fixed("Marine Day", 7, 20, (1996, 2002)),
    nth_monday("Marine Day", 7, 3, (2003, i16::MAX)),
    fixed("Mountain Day", 8, 11, (2016, i16::MAX)),
    fixed("Respect for the Aged Day", 9, 15, (i16::MIN, 2002)),
    nth_monday("Respect for the Aged Day", 9, 3, (2003, i16::MAX)),
    NamedHoliday {
        name: "Autumnal Equinox Day",
        rule: DayRule::AutumnalEquinox,
        first_year: i16::MIN,
        last_year: i16::MAX,
    },
    fixed("Health and Sports Day", 10, 10, (i16::MIN, 1999)),
    nth_monday("Health and Sports Day", 10, 2, (2000, 2019)),
    nth_monday("Sports Day", 10, 2, (2020, i16::MAX)),
    fixed("Culture Day", 11, 3, ALWAYS),
    fixed("Labor Thanksgiving Day", 11, 23, ALWAYS),
    fixed("Emperor's Birthday", 12, 23, (1989, 2018)),
];

/// Named holidays moved for one year by special law (the Tokyo Olympics,
/// held in 2021 after the 2020 postponement).
const MOVED: &[(&str, Date)] = &[
    ("Marine Day", date(2020, 7, 23)),
    ("Sports Day", date(2020, 7, 24)),
    ("Mountain Day", date(2020, 8, 10)),
    ("Marine Day", date(2021, 7, 22)),
    ("Sports Day", date(2021, 7, 23)),
    ("Mountain Day", date(2021, 8, 8)),
];

/// One-off holidays made by special laws. They count as named holidays for
/// the substitute and citizens' rules: that is how 2019-04-30 and 2019-05-02
/// became days off.
const ONE_OFF: &[(&str, Date)] = &[
    ("State Funeral of Emperor Showa", date(1989, 2, 24)),
    ("Enthronement Ceremony Day", date(1990, 11, 12)),
    ("Wedding of Crown Prince Naruhito", date(1993, 6, 9)),
    ("Enthronement Day", date(2019, 5, 1)),
    ("Enthronement Ceremony Day", date(2019, 10, 22)),
];

/// Day of the month of the vernal (`base` 20.8431) or autumnal (23.2488)
/// equinox in Japan, by the standard approximation valid 1980–2099.
fn equinox_day(year: i16, base: f64) -> i8 {
    let since = f64::from(year - 1980);
    (base + 0.242194 * since - (since / 4.0).floor()).floor() as i8
}

fn date_by_rule(rule: DayRule, year: i16) -> Date {
    match rule {
        DayRule::Fixed { month, day } => date(year, month, day),
        DayRule::NthMonday { month, nth } => date(year, month, 1)
            .nth_weekday_of_month(nth, Weekday::Monday)
            .expect("every month has four Mondays"),
        DayRule::VernalEquinox => date(year, 3, equinox_day(year, 20.8431)),
        DayRule::AutumnalEquinox => date(year, 9, equinox_day(year, 23.2488)),
    }
}

/// The named holidays (国民の祝日) and one-off days of a year, unsorted.
fn named_holidays(year: i16) -> Vec<(Date, &'static str)> {
    let mut days: Vec<(Date, &'static str)> = NAMED_HOLIDAYS
        .iter()
        .filter(|h| (h.first_year..=h.last_year).contains(&year))
        .map(|h| {
            let moved = MOVED.iter().find(|(name, day)| *name == h.name && day.year() == year);
            (
                moved.map_or_else(|| date_by_rule(h.rule, year), |(_, day)| *day),
                h.name,
            )
        })
        .collect();
    days.extend(
        ONE_OFF
            .iter()
            .filter(|(_, day)| day.year() == year)
            .map(|(n, d)| (*d, *n)),
    );
    days
}

/// Every public holiday of `year` in date order, with its English name.
/// Empty outside [`SUPPORTED_YEARS`].
pub fn holidays_in(year: i16) -> Vec<(Date, &'static str)> {
    if !SUPPORTED_YEARS.contains(&year) {
        return Vec::new();
    }
    // The neighbours of a year's first and last days matter for the two
    // derived rules, so include the adjacent years' named holidays.
    let mut named = named_holidays(year);
    if year > *SUPPORTED_YEARS.start() {
        named.extend(named_holidays(year - 1));
    }
    if year < *SUPPORTED_YEARS.end() {
        named.extend(named_holidays(year + 1));
    }
    let is_named = |d: Date| named.iter().any(|(day, _)| *day == d);

    let mut substitutes = Vec::new();
    if year >= 1973 {
        for &(day, _) in named.iter().filter(|(d, _)| d.weekday() == Weekday::Sunday) {
            let mut next = day.tomorrow().expect("within the supported years");
            if year >= 2007 {
                while is_named(next) {
                    next = next.tomorrow().expect("within the supported years");
                }
            }
            if !is_named(next) {
                substitutes.push(next);
            }
        }
    }

    let mut citizens = Vec::new();
    if year >= 1986 {
        for &(day, _) in &named {
            let Ok(between) = day.tomorrow() else { continue };
            let Ok(after) = between.tomorrow() else { continue };
            let excluded_before_2007 =
                year < 2007 && (between.weekday() == Weekday::Sunday || substitutes.contains(&between));
            if is_named(after) && !is_named(between) && !excluded_before_2007 && !citizens.contains(&between) {
                citizens.push(between);
            }
        }
    }

    let mut all: Vec<(Date, &'static str)> = named;
    all.extend(substitutes.into_iter().map(|d| (d, SUBSTITUTE_HOLIDAY)));
    all.extend(
        citizens
            .into_iter()
            .filter(|d| !all.iter().any(|(day, _)| day == d))
            .map(|d| (d, CITIZENS_HOLIDAY))
            .collect::<Vec<_>>(),
    );
    all.retain(|(d, _)| d.year() == year);
    all.sort();
    all.dedup_by_key(|(d, _)| *d);
    all
}

/// The English name of the public holiday on `day`, if it is one.
pub fn is_holiday(day: Date) -> Option<&'static str> {
    holidays_in(day.year())
        .into_iter()
        .find(|(d, _)| *d == day)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn named_holidays_on_fixed_dates() {
        let cases: &[(Date, Option<&str>)] = &[
            (date(2026, 1, 1), Some("New Year's Day")),
            (date(2026, 1, 2), None),
            (date(1999, 1, 15), Some("Coming of Age Day")),
            (date(2000, 1, 10), Some("Coming of Age Day")),
            (date(2000, 1, 15), None),
            (date(2026, 1, 12), Some("Coming of Age Day")),
            (date(2026, 2, 11), Some("Foundation Day")),
            (date(2018, 12, 23), Some("Emperor's Birthday")),
            (date(2019, 12, 23), None),
            (date(2019, 2, 23), None),
            (date(2020, 2, 23), Some("Emperor's Birthday")),
            (date(2006, 4, 29), Some("Greenery Day")),
            (date(2007, 4, 29), Some("Showa Day")),
            (date(2007, 5, 4), Some("Greenery Day")),
            (date(2026, 5, 3), Some("Constitution Day")),
            (date(2026, 5, 5), Some("Children's Day")),
            (date(2002, 7, 20), Some("Marine Day")),
            (date(2003, 7, 21), Some("Marine Day")),
            (date(2003, 7, 20), None),
            (date(2026, 7, 20), Some("Marine Day")),
            (date(2015, 8, 11), None),
            (date(2016, 8, 11), Some("Mountain Day")),
            (date(2002, 9, 15), Some("Respect for the Aged Day")),
            (date(2003, 9, 15), Some("Respect for the Aged Day")),
            (date(2026, 9, 21), Some("Respect for the Aged Day")),
            (date(1999, 10, 10), Some("Health and Sports Day")),
            (date(2000, 10, 9), Some("Health and Sports Day")),
            (date(2019, 10, 14), Some("Health and Sports Day")),
            (date(2026, 10, 12), Some("Sports Day")),
            (date(2026, 11, 3), Some("Culture Day")),
            (date(2026, 11, 23), Some("Labor Thanksgiving Day")),
            (date(2026, 12, 31), None),
        ];
        for &(day, want) in cases {
            assert_eq!(is_holiday(day), want, "{day}");
        }
    }

    #[test]
    fn equinoxes_by_formula() {
        // (year, vernal day of March, autumnal day of September), as announced
        // or as tabulated by the National Astronomical Observatory.
        let cases: &[(i16, i8, i8)] = &[
            (1980, 20, 23),
            (2000, 20, 23),
            (2012, 20, 22),
            (2016, 20, 22),
            (2019, 21, 23),
            (2020, 20, 22),
            (2023, 21, 23),
            (2024, 20, 22),
            (2025, 20, 23),
            (2026, 20, 23),
            (2044, 20, 22),
            (2092, 19, 22),
            (2099, 20, 23),
        ];
        for &(year, vernal, autumnal) in cases {
            assert_eq!(is_holiday(date(year, 3, vernal)), Some("Vernal Equinox Day"), "{year}");
            assert_eq!(
                is_holiday(date(year, 9, autumnal)),
                Some("Autumnal Equinox Day"),
                "{year}"
            );
        }
    }

    #[test]
    fn substitute_holidays() {
        let cases: &[(Date, Option<&str>)] = &[
            // Children's Day 2019 on a Sunday: the Monday.
            (date(2019, 5, 6), Some(SUBSTITUTE_HOLIDAY)),
            // Constitution Day 2020 on a Sunday; May 4 and 5 are holidays
            // themselves, so the substitute moves on to Wednesday (from 2007).
            (date(2020, 5, 6), Some(SUBSTITUTE_HOLIDAY)),
            (date(2015, 5, 6), Some(SUBSTITUTE_HOLIDAY)),
            // Mountain Day 2021 moved to a Sunday (Olympics): the Monday.
            (date(2021, 8, 9), Some(SUBSTITUTE_HOLIDAY)),
            // New Year's Day 2023 on a Sunday.
            (date(2023, 1, 2), Some(SUBSTITUTE_HOLIDAY)),
            // Emperor's Birthday 2025 on a Sunday.
            (date(2025, 2, 24), Some(SUBSTITUTE_HOLIDAY)),
            // Respect for the Aged Day on Sunday 2002 (old fixed date).
            (date(2002, 9, 16), Some(SUBSTITUTE_HOLIDAY)),
            // A Saturday holiday gives nothing.
            (date(2026, 1, 5), None),
            (date(2021, 1, 4), None),
        ];
        for &(day, want) in cases {
            assert_eq!(is_holiday(day), want, "{day}");
        }
    }

    #[test]
    fn citizens_holidays_between_two_holidays() {
        let cases: &[(Date, Option<&str>)] = &[
            // May 4 between Constitution Day and Children's Day, before it was
            // named Greenery Day.
            (date(2000, 5, 4), Some(CITIZENS_HOLIDAY)),
            (date(2006, 5, 4), Some(CITIZENS_HOLIDAY)),
            // ... but not on a Sunday (before 2007).
            (date(2003, 5, 4), None),
            // Silver week: between Respect for the Aged Day and the equinox.
            (date(2009, 9, 22), Some(CITIZENS_HOLIDAY)),
            (date(2015, 9, 22), Some(CITIZENS_HOLIDAY)),
            (date(2026, 9, 22), Some(CITIZENS_HOLIDAY)),
            (date(2032, 9, 21), Some(CITIZENS_HOLIDAY)),
            (date(2099, 9, 22), Some(CITIZENS_HOLIDAY)),
            // 2019: the enthronement day made both its neighbours days off.
            (date(2019, 4, 30), Some(CITIZENS_HOLIDAY)),
            (date(2019, 5, 2), Some(CITIZENS_HOLIDAY)),
            // 1998: May 3 on a Sunday made May 4 a substitute holiday.
            (date(1998, 5, 4), Some(SUBSTITUTE_HOLIDAY)),
            (date(2027, 9, 22), None),
        ];
        for &(day, want) in cases {
            assert_eq!(is_holiday(day), want, "{day}");
        }
    }

    #[test]
    fn special_years() {
        let cases: &[(Date, Option<&str>)] = &[
            (date(1989, 2, 24), Some("State Funeral of Emperor Showa")),
            (date(1990, 11, 12), Some("Enthronement Ceremony Day")),
            (date(1993, 6, 9), Some("Wedding of Crown Prince Naruhito")),
            (date(2019, 5, 1), Some("Enthronement Day")),
            (date(2019, 10, 22), Some("Enthronement Ceremony Day")),
            (date(2020, 7, 23), Some("Marine Day")),
            (date(2020, 7, 24), Some("Sports Day")),
            (date(2020, 8, 10), Some("Mountain Day")),
            (date(2020, 7, 20), None),
            (date(2020, 8, 11), None),
            (date(2020, 10, 12), None),
            (date(2021, 7, 22), Some("Marine Day")),
            (date(2021, 7, 23), Some("Sports Day")),
            (date(2021, 8, 8), Some("Mountain Day")),
            (date(2021, 7, 19), None),
            (date(2021, 10, 11), None),
            (date(2022, 7, 18), Some("Marine Day")),
        ];
        for &(day, want) in cases {
            assert_eq!(is_holiday(day), want, "{day}");
        }
    }

    #[test]
    fn a_whole_year_and_outside_the_range() {
        let golden_week_2026: Vec<_> = holidays_in(2026)
            .into_iter()
            .filter(|(d, _)| d.month() == 5)
            .map(|(d, _)| d.day())
            .collect();
        // May 3 is a Sunday: the substitute lands on the 6th.
        assert_eq!(golden_week_2026, [3, 4, 5, 6]);
        assert_eq!(holidays_in(2026).len(), 18);
        assert!(holidays_in(2100).is_empty());
        assert!(holidays_in(1979).is_empty());
        assert_eq!(is_holiday(date(2100, 1, 1)), None);
    }

    /// Package names that differ from the names used here.
    fn our_name(package_name: &str, day: Date) -> &str {
        match package_name {
            "National Holiday" => CITIZENS_HOLIDAY,
            "Physical Education Day" => "Health and Sports Day",
            "Emperor's Enthronement Day" if day.month() == 10 => "Enthronement Ceremony Day",
            "Emperor's Enthronement Day" => "Enthronement Day",
            other => other,
        }
    }

    /// Every day of 2000–2099 against an independent table (PyPI `holidays`,
    /// see the file's first line), both ways, names included.
    #[test]
    fn agrees_with_independent_table_2000_to_2099() {
        let table = include_str!("../../tests/data/jp_holidays_2000_2099.csv");
        let mut expected: BTreeMap<Date, String> = BTreeMap::new();
        for line in table.lines().filter(|l| !l.starts_with('#') && *l != "date,name") {
            let (day, name) = line.split_once(',').expect("date,name");
            let day: Date = day.parse().expect("a date");
            expected.insert(day, our_name(name, day).to_string());
        }
        assert!(expected.len() > 1700, "table looks truncated: {}", expected.len());
        let mut computed = BTreeMap::new();
        for year in 2000..=2099 {
            computed.extend(holidays_in(year).into_iter().map(|(d, n)| (d, n.to_string())));
        }
        let missing: Vec<_> = expected.iter().filter(|(d, n)| computed.get(*d) != Some(n)).collect();
        let extra: Vec<_> = computed.iter().filter(|(d, n)| expected.get(*d) != Some(n)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}\nextra {extra:?}"
        );
        // And day by day, so a duplicate or a stray year cannot hide.
        let mut day = date(2000, 1, 1);
        while day.year() <= 2099 {
            assert_eq!(computed.get(&day), expected.get(&day), "{day}");
            day = day.tomorrow().unwrap();
        }
        assert_eq!(computed.len(), expected.len());
    }
}
