use jiff::civil::date;

use super::*;

fn tokyo() -> TimeZone {
    TimeZone::get("Asia/Tokyo").unwrap()
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn check_instants(calendar: &Calendar, zone: &TimeZone, cases: &[(&str, Option<&str>)]) {
    for &(at, want) in cases {
        assert_eq!(calendar.is_busy(ts(at), zone), want, "at {at}");
    }
}

fn check_days(calendar: &Calendar, cases: &[(Date, Option<&str>)]) {
    for &(day, want) in cases {
        assert_eq!(calendar.busy_on(day, &tokyo()), want, "on {day}");
    }
}

#[test]
fn google_export() {
    let calendar = Calendar::parse(include_str!("../../tests/data/google_shop.ics")).unwrap();
    // The cancelled one-off is gone; the cancelled override only removes
    // its occurrence.
    assert_eq!(calendar.events().len(), 4);
    check_instants(
        &calendar,
        &tokyo(),
        &[
            // All-day, DTEND exclusive, in the shop's zone.
            ("2026-12-28T14:59:59Z", None),
            ("2026-12-28T15:00:00Z", Some("Year-end closing")),
            ("2027-01-03T14:59:59Z", Some("Year-end closing")),
            ("2027-01-03T15:00:00Z", None),
            // Weekly on Wednesday 14:00-15:00 Tokyo.
            ("2026-01-07T04:59:59Z", None),
            ("2026-01-07T05:00:00Z", Some("Staff meeting (phones off)")),
            ("2026-01-07T05:59:59Z", Some("Staff meeting (phones off)")),
            ("2026-01-07T06:00:00Z", None),
            ("2026-01-08T05:30:00Z", None),
            ("2026-02-04T05:30:00Z", Some("Staff meeting (phones off)")),
            ("2028-06-07T05:30:00Z", Some("Staff meeting (phones off)")),
            // EXDATE, one and two on a line.
            ("2026-01-14T05:30:00Z", None),
            ("2026-02-11T05:30:00Z", None),
            ("2026-02-18T05:30:00Z", None),
            // An override moved 21 January to 16:00.
            ("2026-01-21T05:30:00Z", None),
            ("2026-01-21T07:30:00Z", Some("Staff meeting (moved to 16:00)")),
            // A cancelled occurrence.
            ("2026-01-28T05:30:00Z", None),
            // Last Friday of the month, written in UTC, until the end of 2026.
            ("2026-01-30T04:30:00Z", Some("Stocktaking, closed early")),
            ("2026-02-27T08:59:00Z", Some("Stocktaking, closed early")),
            ("2026-02-20T05:00:00Z", None),
            ("2026-12-25T05:00:00Z", Some("Stocktaking, closed early")),
            ("2027-01-29T05:00:00Z", None),
        ],
    );
    check_days(
        &calendar,
        &[
            (date(2026, 12, 29), Some("Year-end closing")),
            (date(2026, 5, 5), None),
            (date(2026, 2, 4), Some("Staff meeting (phones off)")),
            (date(2026, 2, 5), None),
            (date(2026, 1, 28), None),
        ],
    );
}

#[test]
fn apple_export() {
    let calendar = Calendar::parse(include_str!("../../tests/data/apple_closures.ics")).unwrap();
    check_days(
        &calendar,
        &[
            (date(2026, 8, 12), None),
            (date(2026, 8, 13), Some("Obon")),
            (date(2026, 8, 16), Some("Obon")),
            (date(2026, 8, 17), None),
            // Second Monday of each month, but not May 2026.
            (date(2026, 1, 12), Some("定休日 (regular closing day)")),
            (date(2026, 2, 9), Some("定休日 (regular closing day)")),
            (date(2026, 2, 10), None),
            (date(2026, 2, 2), None),
            (date(2026, 5, 11), None),
            (date(2026, 6, 8), Some("定休日 (regular closing day)")),
            (date(2027, 3, 8), Some("定休日 (regular closing day)")),
            // Yearly, three times.
            (date(2026, 6, 1), Some("Founder's day")),
            (date(2028, 6, 1), Some("Founder's day")),
            (date(2029, 6, 1), None),
            // 09:00 in New York (daylight time from 8 March) is 22:00 in Tokyo.
            (date(2026, 3, 10), Some("Supplier call (New York time)")),
            (date(2026, 3, 11), None),
        ],
    );
    check_instants(
        &calendar,
        &tokyo(),
        &[
            ("2026-03-10T12:59:59Z", None),
            ("2026-03-10T13:00:00Z", Some("Supplier call (New York time)")),
            ("2026-03-10T14:29:59Z", Some("Supplier call (New York time)")),
            ("2026-03-10T14:30:00Z", None),
        ],
    );
}

#[test]
fn thunderbird_export_and_floating_times() {
    let calendar = Calendar::parse(include_str!("../../tests/data/thunderbird_breaks.ics")).unwrap();
    check_instants(
        &calendar,
        &tokyo(),
        &[
            ("2026-04-01T03:30:00Z", Some("Lunch break")),
            ("2026-04-03T03:30:00Z", Some("Lunch break")),
            ("2026-04-04T03:30:00Z", None),
            ("2026-04-06T02:59:59Z", None),
            ("2026-04-30T03:30:00Z", Some("Lunch break")),
            ("2026-05-01T03:30:00Z", None),
            // RDATE adds a Saturday.
            ("2026-05-02T03:30:00Z", Some("Lunch break")),
            // Floating 08:00 is 08:00 wherever the question is asked.
            ("2026-04-05T23:15:00Z", Some("Deliveries (floating time)")),
            ("2026-04-19T23:15:00Z", Some("Deliveries (floating time)")),
            ("2026-04-12T23:15:00Z", None),
            ("2026-05-17T23:15:00Z", None),
        ],
    );
    check_instants(
        &calendar,
        &TimeZone::UTC,
        &[
            ("2026-04-06T08:15:00Z", Some("Deliveries (floating time)")),
            ("2026-04-05T23:15:00Z", None),
        ],
    );
}

fn wrap(events: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{events}END:VCALENDAR\r\n")
}

#[test]
fn errors_name_the_line() {
    let cases: &[(String, &str)] = &[
        (String::new(), "line 1: not an iCalendar file (no BEGIN:VCALENDAR)"),
        ("BEGIN:VEVENT\nEND:VEVENT\n".into(), "line 1: expected BEGIN:VCALENDAR"),
        (
            wrap("BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\n"),
            "line 3: this event has no DTSTART",
        ),
        (
            wrap("BEGIN:VEVENT\nDTSTART:2026-01-01\nEND:VEVENT\n"),
            "line 4: DTSTART:2026-01-01 is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS)",
        ),
        (
            wrap("BEGIN:VEVENT\nDTSTART;TZID=Mars/Olympus:20260101T090000\nEND:VEVENT\n"),
            "line 4: unknown time zone \"Mars/Olympus\" (use a name like Asia/Tokyo)",
        ),
        (
            wrap("BEGIN:VEVENT\nDTSTART:20260101T090000\nRRULE:FREQ=DAILY;BYHOUR=9\nEND:VEVENT\n"),
            "line 5: RRULE: BYHOUR is not supported",
        ),
        (
            wrap("BEGIN:VEVENT\nDTSTART:20260101\nDTEND:20260102\nDURATION:P1D\nEND:VEVENT\n"),
            "line 3: this event has both DTEND and DURATION",
        ),
        (
            wrap("BEGIN:VEVENT\nDTSTART:20260101\nDURATION:1 day\nEND:VEVENT\n"),
            "line 5: DURATION:1 day is not a duration like P1D or PT2H30M",
        ),
        (
            wrap("BEGIN:VEVENT\nDTSTART:20260101\nEND:VTODO\n"),
            "line 5: END:VTODO but BEGIN:VEVENT on line 3 is still open",
        ),
        (
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101\n".into(),
            "line 2: BEGIN:VEVENT is never closed",
        ),
        (
            wrap("this is not ics\n"),
            "line 3: \"this is not ics\" is not a NAME:value line",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Calendar::parse(text).unwrap_err().to_string(), *want, "{text:?}");
    }
}

#[test]
fn folding_escapes_and_parameters() {
    let text = wrap(concat!(
        "BEGIN:VEVENT\r\n",
        "DTSTART;TZID=\"Tokyo Standard Time\":20260301T100000\r\n",
        "DTEND;TZID=\"Tokyo Standard Time\":20260301T110000\r\n",
        "SUMMARY:Closed: \\\"inventory\\\"\\, back\r\n",
        "\tat 11\\;00\\nthanks\r\n",
        "END:VEVENT\r\n",
    ));
    let calendar = Calendar::parse(&text).unwrap();
    assert_eq!(
        calendar.is_busy(ts("2026-03-01T01:30:00Z"), &TimeZone::UTC),
        Some("Closed: \"inventory\", backat 11;00\nthanks")
    );
    assert_eq!(calendar.events()[0].line, 3);
}

#[test]
fn durations_and_defaults() {
    // (text, Some((calendar days, seconds))) or None for an error.
    let cases: &[(&str, Option<(i64, i64)>)] = &[
        ("P1D", Some((1, 0))),
        ("P2W", Some((14, 0))),
        ("PT1H30M", Some((0, 5400))),
        ("P1DT12H", Some((1, 43200))),
        ("PT45S", Some((0, 45))),
        ("-PT1H", None),
        ("P", None),
        ("PT1D", None),
        ("P1H", None),
    ];
    for &(text, want) in cases {
        assert_eq!(parse_duration(text).ok(), want, "{text}");
    }
    // A date with no end lasts the day; a date-time with no end is an instant.
    let calendar = Calendar::parse(&wrap(concat!(
        "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260301\nSUMMARY:day\nEND:VEVENT\n",
        "BEGIN:VEVENT\nDTSTART:20260302T100000Z\nSUMMARY:instant\nEND:VEVENT\n",
        "BEGIN:VEVENT\nDTSTART:20260303T100000Z\nDURATION:P1DT1H\nSUMMARY:long\nEND:VEVENT\n",
    )))
    .unwrap();
    let utc = TimeZone::UTC;
    assert_eq!(calendar.is_busy(ts("2026-03-01T23:59:59Z"), &utc), Some("day"));
    assert_eq!(calendar.is_busy(ts("2026-03-02T10:00:00Z"), &utc), None);
    assert_eq!(calendar.busy_on(date(2026, 3, 2), &utc), None);
    assert_eq!(calendar.is_busy(ts("2026-03-04T10:59:59Z"), &utc), Some("long"));
    assert_eq!(calendar.is_busy(ts("2026-03-04T11:00:00Z"), &utc), None);
}

#[test]
fn daylight_saving_keeps_the_local_time() {
    // Weekly 09:00 in New York across the March change: 14:00Z, then 13:00Z.
    let calendar = Calendar::parse(&wrap(concat!(
        "BEGIN:VEVENT\nDTSTART;TZID=America/New_York:20260302T090000\n",
        "DTEND;TZID=America/New_York:20260302T100000\nRRULE:FREQ=WEEKLY;COUNT=3\nSUMMARY:ny\nEND:VEVENT\n",
    )))
    .unwrap();
    check_instants(
        &calendar,
        &tokyo(),
        &[
            ("2026-03-02T14:30:00Z", Some("ny")),
            ("2026-03-09T13:30:00Z", Some("ny")),
            ("2026-03-09T14:30:00Z", None),
            ("2026-03-16T13:30:00Z", Some("ny")),
            ("2026-03-23T13:30:00Z", None),
        ],
    );
}
