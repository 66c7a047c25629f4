//! Deciding, table-driven, on fixed timestamps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use super::calendar::ClosedDays;
use super::caller::{CallerList, CallerPattern};
use super::ics::Calendar;
use super::when::{CallerTest, DateSpan, RepeatCaller};
use super::*;

fn prompt(name: &str) -> PromptRef {
    PromptRef {
        name: name.into(),
        duration: Duration::from_secs(1),
    }
}

fn announce(name: &str) -> Plan {
    Plan::single(Action::Announce {
        prompt: prompt(name),
        repeat: 1,
        answer_after: Duration::ZERO,
    })
}

fn ring_then_voicemail(phones: &[&str]) -> Plan {
    Plan {
        steps: vec![
            Action::Ring(RingStep {
                phones: phones.iter().map(|p| p.to_string()).collect(),
                order: RingOrder::Simultaneous,
                timeout: Duration::from_secs(30),
                per_phone: Duration::from_secs(15),
                ringback: Ringback::Ringing,
            }),
            Action::Voicemail(VoicemailStep {
                greeting: None,
                max_length: Duration::from_secs(120),
                min_length: Duration::from_secs(2),
                silence: Duration::from_secs(10),
                goodbye: None,
            }),
        ],
        label: Some("Shop".into()),
    }
}

fn hours(text: &[&str]) -> Option<Hours> {
    Some(Hours(text.iter().map(|t| HourRange::parse(t).unwrap()).collect()))
}

fn days(text: &str) -> Option<DaySet> {
    Some(DaySet::parse(text).unwrap())
}

fn policy(zone: &str, rules: Vec<(When, Plan)>, closures: Closures) -> Policy {
    let mut numbers = BTreeMap::new();
    numbers.insert(
        "public".to_string(),
        NumberPolicy {
            name: "public".into(),
            number: "0501110001".into(),
            label: "Public".into(),
            match_on: MatchOn::default(),
            rules: rules.into_iter().map(|(when, plan)| Rule { when, plan }).collect(),
        },
    );
    Policy {
        shop_name: "test".into(),
        timezone: TimeZone::get(zone).unwrap(),
        numbers,
        shop: Shop {
            number_plan: NumberPlan::default(),
            holidays: Some(HolidayRules::Japan),
            closures: Arc::new(closures),
            modes: vec!["busy".into()],
        },
    }
}

/// Which announcement (or "ring") a call at `at` (UTC) gets.
fn outcome(p: &Policy, facts: CallFacts) -> String {
    match p.decide(&facts) {
        Decision::Route { plan, .. } => match &plan.steps[0] {
            Action::Announce { prompt, .. } => prompt.name.to_string(),
            other => other.kind().to_string(),
        },
        Decision::NoRule { .. } => "none".into(),
        Decision::UnknownNumber => "unknown".into(),
    }
}

fn at(ts: &str) -> CallFacts<'static> {
    CallFacts::new("public", ts.parse::<Timestamp>().unwrap())
}

fn catch_all() -> (When, Plan) {
    (When::default(), announce("other"))
}

#[test]
fn hours_several_ranges_and_across_midnight() {
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    hours: hours(&["22:00-06:00"]),
                    ..When::default()
                },
                announce("night"),
            ),
            (
                When {
                    days: days("mon-fri"),
                    hours: hours(&["10:00-12:00", "13:00-17:00"]),
                    ..When::default()
                },
                announce("open"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    // Tokyo is UTC+9. 2026-11-24 is a Tuesday.
    for (utc, want) in [
        ("2026-11-24T01:00:00Z", "open"),  // 10:00
        ("2026-11-24T02:59:00Z", "open"),  // 11:59
        ("2026-11-24T03:00:00Z", "other"), // 12:00 lunch
        ("2026-11-24T04:00:00Z", "open"),  // 13:00
        ("2026-11-24T08:00:00Z", "other"), // 17:00, end exclusive
        ("2026-11-24T13:00:00Z", "night"), // 22:00
        ("2026-11-24T20:59:00Z", "night"), // 05:59 next day
        ("2026-11-24T21:00:00Z", "other"), // 06:00
        ("2026-11-28T01:00:00Z", "other"), // Saturday 10:00
    ] {
        assert_eq!(outcome(&p, at(utc)), want, "{utc}");
    }
}

#[test]
fn dst_edges_in_new_york() {
    let p = policy(
        "America/New_York",
        vec![
            (
                When {
                    hours: hours(&["09:00-17:00"]),
                    ..When::default()
                },
                announce("open"),
            ),
            (
                When {
                    hours: hours(&["01:00-02:00"]),
                    ..When::default()
                },
                announce("one"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    for (utc, want) in [
        // 2026-03-08: clocks jump 02:00 EST -> 03:00 EDT (UTC-4 after).
        ("2026-03-08T13:00:00Z", "open"),  // 09:00 EDT
        ("2026-03-08T12:59:00Z", "other"), // 08:59 EDT
        ("2026-03-07T14:00:00Z", "open"),  // 09:00 EST the day before
        ("2026-03-07T13:59:00Z", "other"),
        ("2026-03-08T06:59:00Z", "one"),   // 01:59 EST, just before the jump
        ("2026-03-08T07:00:00Z", "other"), // 03:00 EDT
        // 2026-11-01: 02:00 EDT -> 01:00 EST; 01:xx happens twice.
        ("2026-11-01T05:30:00Z", "one"), // 01:30 EDT
        ("2026-11-01T06:30:00Z", "one"), // 01:30 EST
        ("2026-11-01T07:30:00Z", "other"),
        ("2026-11-02T14:00:00Z", "open"), // 09:00 EST
        ("2026-11-02T13:59:00Z", "other"),
    ] {
        assert_eq!(outcome(&p, at(utc)), want, "{utc}");
    }
}

#[test]
fn holidays_substitute_and_citizens_with_reasons() {
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    days: days("mon-fri"),
                    hours: hours(&["10:00-17:00"]),
                    holiday: Some((false, HolidayRules::Japan)),
                    ..When::default()
                },
                announce("open"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    for (utc, want) in [
        ("2026-11-03T01:00:00Z", "other"), // Culture Day, a Tuesday
        ("2026-11-04T01:00:00Z", "open"),
        ("2026-05-06T01:00:00Z", "other"), // substitute for Constitution Day on Sunday 5/3
        ("2026-09-22T01:00:00Z", "other"), // citizens' holiday between Respect for the Aged and Autumnal Equinox
        ("2026-09-24T01:00:00Z", "open"),
    ] {
        assert_eq!(outcome(&p, at(utc)), want, "{utc}");
    }
    let Decision::Route { why, .. } = p.decide(&at("2026-11-03T01:00:00Z")) else {
        panic!()
    };
    assert_eq!(
        why,
        "public: rule 2 (always) matched; rule 1 (mon-fri 10:00-17:00, not holiday) not: it is a public holiday (Culture Day)"
    );
    let Decision::Route { why, .. } = p.decide(&at("2026-11-24T10:00:00Z")) else {
        panic!()
    };
    assert!(why.ends_with("not: it is 19:00 JST"), "{why}");
}

#[test]
fn closing_days_and_calendar_recurrences() {
    let days_file = ClosedDays::parse("2026-12-29..2027-01-03 New Year\n").unwrap();
    // Closed every Wednesday 12:00-13:00 (lunch), except 2026-12-02.
    let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Lunch\r\nDTSTART;TZID=Asia/Tokyo:20261104T120000\r\n\
DTEND;TZID=Asia/Tokyo:20261104T130000\r\nRRULE:FREQ=WEEKLY;BYDAY=WE\r\nEXDATE;TZID=Asia/Tokyo:20261202T120000\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
    let closures = Closures {
        days: days_file,
        calendar: Some(Calendar::parse(ics).unwrap()),
    };
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    closed: None,
                    ..When::default()
                },
                announce("placeholder"),
            ),
            catch_all(),
        ],
        closures,
    );
    // Replace the placeholder with the closed test, sharing the closures.
    let closures = p.shop.closures.clone();
    let mut p = p;
    p.numbers.get_mut("public").unwrap().rules[0].when.closed = Some((true, closures));
    p.numbers.get_mut("public").unwrap().rules[0].plan = announce("closed");
    for (utc, want) in [
        ("2026-12-31T12:00:00Z", "closed"), // 21:00 on a closing day
        ("2027-01-04T01:00:00Z", "other"),
        ("2026-11-25T03:30:00Z", "closed"), // Wednesday 12:30
        ("2026-11-25T04:00:00Z", "other"),  // 13:00
        ("2026-12-02T03:30:00Z", "other"),  // the excepted Wednesday
        ("2026-11-26T03:30:00Z", "other"),  // Thursday
    ] {
        assert_eq!(outcome(&p, at(utc)), want, "{utc}");
    }
    let Decision::Route { why, .. } = p.decide(&at("2026-12-31T12:00:00Z")) else {
        panic!()
    };
    assert!(why.contains("rule 1 (closed) matched"), "{why}");
    let (e, _) = p.explain(&at("2026-11-25T03:30:00Z")).unwrap();
    assert_eq!(e.matched.unwrap().0, 1);
}

#[test]
fn callers_normalised_and_anonymous_forms() {
    let plan = NumberPlan::default();
    let list = CallerList::parse("045-555*  # partner\n+1 415 555 0100\n", &plan).unwrap();
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    caller: Some(CallerTest {
                        patterns: vec![CallerPattern::parse("090-1234-5678", &plan).unwrap()],
                        files: vec![("sales.txt".into(), Arc::new(list))],
                    }),
                    ..When::default()
                },
                announce("sales"),
            ),
            (
                When {
                    anonymous: Some(true),
                    ..When::default()
                },
                announce("anon"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    let call = |from: &str, asserted: Option<&str>, privacy: Option<&str>| {
        let caller = p.caller_of(&CallerHeaders {
            from,
            asserted,
            privacy,
        });
        outcome(
            &p,
            CallFacts {
                caller,
                ..at("2026-11-24T01:00:00Z")
            },
        )
    };
    for (from, asserted, privacy, want) in [
        ("sip:+819012345678@provider", None, None, "sales"),
        ("sip:09012345678@provider", None, None, "sales"),
        ("tel:+81-90-1234-5678", None, None, "sales"),
        ("sip:0455551234@p", None, None, "sales"),
        ("sip:0014155550100@p", None, None, "sales"),
        ("sip:0312345678@p", None, None, "other"),
        ("sip:anonymous@anonymous.invalid", None, None, "anon"),
        ("sip:0312345678@p", None, Some("id"), "anon"),
        ("\"Unknown\" <sip:unknown@p>", None, None, "anon"),
        ("sip:anonymous@p", Some("sip:+819012345678@p"), None, "sales"),
    ] {
        assert_eq!(call(from, asserted, privacy), want, "{from} {asserted:?} {privacy:?}");
    }
}

#[test]
fn modes_with_expiry() {
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    mode: Some("busy".into()),
                    ..When::default()
                },
                announce("busy"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    let set_at: Timestamp = "2026-11-24T01:00:00Z".parse().unwrap();
    let mut modes = Modes::default();
    modes.set("public", "busy", Some("2026-11-24T03:00:00Z".parse().unwrap()), set_at);
    let with = |modes: &Modes, ts: &str| outcome(&p, CallFacts { modes, ..at(ts) });
    assert_eq!(with(&modes, "2026-11-24T02:59:59Z"), "busy");
    assert_eq!(with(&modes, "2026-11-24T03:00:00Z"), "other");
    let Decision::Route { why, .. } = p.decide(&CallFacts {
        modes: &modes,
        ..at("2026-11-24T04:00:00Z")
    }) else {
        panic!()
    };
    assert!(why.contains("not: the mode of public is normal"), "{why}");
    modes.set("public", "busy", None, set_at);
    assert_eq!(with(&modes, "2027-01-01T00:00:00Z"), "busy");
    modes.set("public", "normal", None, set_at);
    assert!(modes.0.is_empty());
    assert_eq!(with(&modes, "2026-11-24T02:00:00Z"), "other");
}

#[test]
fn repeat_caller_windows() {
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    repeat_caller: Some(RepeatCaller {
                        times: 3,
                        within: Duration::from_secs(600),
                    }),
                    ..When::default()
                },
                announce("urgent"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    let ts = |s: &str| s.parse::<Timestamp>().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["2026-11-24T00:55:00Z", "2026-11-24T00:58:00Z"], "urgent"),
        (&["2026-11-24T00:50:00Z", "2026-11-24T00:58:00Z"], "urgent"), // exactly 10 minutes counts
        (&["2026-11-24T00:49:59Z", "2026-11-24T00:58:00Z"], "other"),
        (&["2026-11-24T00:58:00Z"], "other"),
    ];
    for (earlier, want) in cases {
        let earlier: Vec<Timestamp> = earlier.iter().map(|s| ts(s)).collect();
        let got = outcome(
            &p,
            CallFacts {
                earlier_calls: &earlier,
                ..at("2026-11-24T01:00:00Z")
            },
        );
        assert_eq!(got, want, "{earlier:?}");
    }
}

#[test]
fn load_and_phone_conditions_fall_back() {
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    shop_calls_at_least: Some(5),
                    ..When::default()
                },
                announce("shop-full"),
            ),
            (
                When {
                    active_calls_at_least: Some(2),
                    ..When::default()
                },
                announce("line-busy"),
            ),
            (
                When {
                    phones_busy: Some(true),
                    ..When::default()
                },
                ring_then_voicemail(&["desk", "mobile"]),
            ),
            (When::default(), ring_then_voicemail(&["desk"])),
        ],
        Closures::default(),
    );
    let mut phones = BTreeMap::new();
    phones.insert("desk".to_string(), PhoneState::Busy);
    let base = || CallFacts {
        phones: &phones,
        ..at("2026-11-24T01:00:00Z")
    };
    assert_eq!(
        outcome(
            &p,
            CallFacts {
                shop_calls: 5,
                ..base()
            }
        ),
        "shop-full"
    );
    assert_eq!(
        outcome(
            &p,
            CallFacts {
                active_calls: 2,
                shop_calls: 4,
                ..base()
            }
        ),
        "line-busy"
    );
    // desk busy, mobile unlisted (unregistered): the phones_busy rule matches.
    let Decision::Route { plan, why, .. } = p.decide(&CallFacts {
        active_calls: 1,
        ..base()
    }) else {
        panic!()
    };
    assert_eq!(plan.kind(), "ring>voicemail");
    assert_eq!(plan.label.as_deref(), Some("Shop"));
    assert!(why.contains("rule 3 (phones busy) matched"), "{why}");
    assert!(
        why.contains("rule 2 (2+ calls on the number) not: 1 call(s) in progress on this number, fewer than 2"),
        "{why}"
    );
    let mut free = phones.clone();
    free.insert("mobile".into(), PhoneState::Free);
    let Decision::Route { why, .. } = p.decide(&CallFacts {
        phones: &free,
        ..at("2026-11-24T01:00:00Z")
    }) else {
        panic!()
    };
    assert!(
        why.contains("rule 4 (always) matched") && why.contains("not: mobile is free"),
        "{why}"
    );
}

#[test]
fn dates_unknown_numbers_and_no_rule() {
    let p = policy(
        "Asia/Tokyo",
        vec![(
            When {
                dates: vec![DateSpan::parse("2026-12-29..2027-01-03").unwrap()],
                ..When::default()
            },
            announce("new-year"),
        )],
        Closures::default(),
    );
    assert_eq!(outcome(&p, at("2026-12-28T15:00:00Z")), "new-year"); // 12-29 00:00 JST
    assert_eq!(outcome(&p, at("2027-01-03T14:59:00Z")), "new-year");
    assert_eq!(outcome(&p, at("2027-01-03T15:00:00Z")), "none");
    assert_eq!(
        outcome(
            &p,
            CallFacts::new("0501110001", "2026-12-30T00:00:00Z".parse().unwrap())
        ),
        "new-year"
    );
    assert_eq!(
        outcome(&p, CallFacts::new("nobody", "2026-12-30T00:00:00Z".parse().unwrap())),
        "unknown"
    );
    let Decision::NoRule { why, .. } = p.decide(&at("2027-01-05T00:00:00Z")) else {
        panic!()
    };
    assert!(why.contains("2027-01-05 is not in 2026-12-29..2027-01-03"), "{why}");
}

#[test]
fn week_view_collapses_hours_and_marks_holidays() {
    let p = policy(
        "Asia/Tokyo",
        vec![
            (
                When {
                    days: days("mon-fri"),
                    hours: hours(&["10:00-17:00"]),
                    holiday: Some((false, HolidayRules::Japan)),
                    ..When::default()
                },
                announce("open"),
            ),
            catch_all(),
        ],
        Closures::default(),
    );
    // From Monday 2026-11-02 (Culture Day is Tuesday 11-03).
    let week = week::week(&p, &at("2026-11-02T00:00:00Z")).unwrap();
    assert_eq!(week.len(), 7);
    assert_eq!(
        week[0].spans.iter().map(|s| (s.from, s.to, s.rule)).collect::<Vec<_>>(),
        [(0, 10, Some(2)), (10, 17, Some(1)), (17, 24, Some(2))]
    );
    assert_eq!(week[1].holiday, Some("Culture Day"));
    assert_eq!(week[1].spans.len(), 1);
    assert_eq!(week[5].date.weekday(), Weekday::Saturday);
    assert_eq!(week[5].spans.len(), 1);
}

#[test]
fn day_sets_ranges_and_coverage() {
    let d = DaySet::parse("fri-mon").unwrap();
    assert!(d.contains(Weekday::Sunday) && d.contains(Weekday::Monday) && !d.contains(Weekday::Tuesday));
    assert_eq!(d.to_string(), "mon,fri-sun");
    assert_eq!(DaySet::parse("mon-fri").unwrap().to_string(), "mon-fri");
    assert!(DaySet::parse("funday").is_err() && DaySet::parse("mo").is_err());
    let night = HourRange::parse("22:00-06:00").unwrap();
    assert!(night.contains(Time::constant(23, 0, 0, 0)) && night.contains(Time::constant(5, 59, 0, 0)));
    assert!(!night.contains(Time::constant(6, 0, 0, 0)));
    assert!(HourRange::parse("10:00-10:00").is_err() && HourRange::parse("9-17").is_err());
    assert!(
        HourRange::parse("00:00-24:00")
            .unwrap()
            .contains(Time::constant(23, 59, 0, 0))
    );
    assert!(DateSpan::parse("2027-01-03..2026-12-29").is_err());

    let wide = When {
        days: days("mon-sat"),
        hours: hours(&["09:00-18:00"]),
        ..When::default()
    };
    let narrow = When {
        days: days("mon-fri"),
        hours: hours(&["10:00-12:00", "13:00-17:00"]),
        ..When::default()
    };
    assert!(wide.covers(&narrow) && !narrow.covers(&wide));
    assert!(When::default().covers(&narrow) && When::default().is_always());
    let evening = When {
        hours: hours(&["17:00-02:00"]),
        ..When::default()
    };
    let late = When {
        hours: hours(&["23:00-01:00"]),
        ..When::default()
    };
    assert!(evening.covers(&late) && !late.covers(&evening));
    let with_mode = When {
        mode: Some("busy".into()),
        ..When::default()
    };
    assert!(!with_mode.covers(&narrow) && !narrow.covers(&with_mode));
}
