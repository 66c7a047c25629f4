//! Config errors and warnings about rules, phones and shop files, each with its line.

use std::path::PathBuf;
use std::time::Duration;

use super::tests::{check, prompt_dir};
use crate::config::{OutsideCallerId, OutsideNumber, PhoneReach, WhenBusy};
use crate::policy::{Action, CallFacts, Decision, RingOrder};

/// A file in a fresh temporary directory, for the shop's lists and calendars.
fn file(name: &str, text: &str) -> PathBuf {
    let path = prompt_dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn phones() -> String {
    let secret = file("desk-secret", "correct horse battery\n");
    format!(
        "[phones.desk]\npassword_file = \"{}\"\n[phones.mobile]\nnumber = \"090-1111-2222\"\nbusy = \"ring\"\n",
        secret.display()
    )
}

fn errors(body: &str) -> String {
    check(body).unwrap_err().to_string()
}

fn assert_has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "missing {n:?} in:\n{text}");
    }
}

#[test]
fn steps_compile_in_natural_order_with_phones() {
    // Lines: 6-9 phones, 10 [shop], then numbers.
    let c = check(&format!(
        "{}[shop]\nholidays = \"jp\"\ntimezone = \"Asia/Tokyo\"\n[numbers.public]\nnumber = \"1\"\n[[numbers.public.rules]]\n\
when = {{ days = \"mon-fri\", hours = [\"10:00-12:00\", \"13:00-17:00\"], holiday = false }}\n\
announce = \"hello.wav\"\nvoicemail = {{ max_length = \"3m\", greeting = \"hello.wav\" }}\n\
ring = {{ phones = [\"desk\", \"mobile\"], order = \"in-turn\", timeout = \"40s\", per_phone = \"20s\" }}\nlabel = \"Courier\"\n\
[[numbers.public.rules]]\nreject = 603\n",
        phones()
    ))
    .unwrap();
    let rules = &c.policy.numbers["public"].rules;
    assert_eq!(rules[0].plan.kind(), "ring>voicemail>announce");
    assert_eq!(rules[0].plan.label.as_deref(), Some("Courier"));
    let Action::Ring(ring) = &rules[0].plan.steps[0] else {
        panic!()
    };
    assert_eq!(
        (ring.order, ring.timeout, ring.per_phone),
        (RingOrder::Sequential, Duration::from_secs(40), Duration::from_secs(20))
    );
    let Action::Voicemail(vm) = &rules[0].plan.steps[1] else {
        panic!()
    };
    assert_eq!(vm.max_length, Duration::from_secs(180));
    assert_eq!(rules[1].plan.steps, [Action::Reject { status: 603 }]);
    let desk = c.settings.phones.get("desk").unwrap();
    assert!(matches!(&desk.reach, PhoneReach::Registers { password } if password == "correct horse battery"));
    assert!(
        !format!("{:?}", c.settings.phones).contains("horse"),
        "no secrets in Debug"
    );
    let mobile = c.settings.phones.get("mobile").unwrap();
    assert_eq!(
        (&mobile.reach, mobile.when_busy),
        (
            &PhoneReach::Outside(OutsideNumber {
                number: "09011112222".into(),
                via: None,
                caller_id: OutsideCallerId::Line,
            }),
            WhenBusy::Ring
        )
    );
    // No line registers with a provider here, so the mobile can never ring.
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("phones.mobile: an outside number is called through the provider"),
        "{warnings:?}"
    );
    assert!(
        c.settings.mode_file.ends_with("var/shop.modes.json"),
        "{:?}",
        c.settings.mode_file
    );
    // Culture Day (Tuesday): rule 1 says why not.
    let Decision::Route { why, .. } = c
        .policy
        .decide(&CallFacts::new("public", "2026-11-03T02:00:00Z".parse().unwrap()))
    else {
        panic!()
    };
    assert!(why.contains("it is a public holiday (Culture Day)"), "{why}");
}

#[test]
fn unknown_phone_and_prompt_and_bad_steps() {
    let e = errors(&format!(
        "{}[numbers.public]\nnumber = \"1\"\n[[numbers.public.rules]]\nring = {{ phones = [\"dsek\"] }}\nvoicemail = {{ greeting = \"nope.wav\", max_length = \"1m\" }}\n\
[[numbers.public.rules]]\nreject = 200\n",
        phones()
    ));
    assert_has(
        &e,
        &[
            "shop.toml:14: numbers.public.rules[1].ring.phones: unknown phone \"dsek\": add a [phones.dsek] section or fix the name (known phones: desk, mobile)",
            "shop.toml:15: numbers.public.rules[1].voicemail.greeting: prompt",
            "nope.wav",
            "shop.toml:17: numbers.public.rules[2].reject: must be a SIP failure status",
        ],
    );
    let e = errors("[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nlabel = \"x\"\n");
    assert_has(&e, &["shop.toml:8: numbers.a.rules[1]: no step"]);
    let e = errors(
        "[phones.desk]\nuri = \"desk\"\n[phones.x]\nuri = \"sip:x@h\"\nnumber = \"1\"\n[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nring = { phones = [\"desk\", \"x\"] }\n",
    );
    assert_has(
        &e,
        &[
            "shop.toml:7: phones.desk.uri: not a SIP URI",
            "shop.toml:8: phones.x: say how to reach it with exactly one of",
        ],
    );
}

#[test]
fn shop_files_report_their_own_lines() {
    let closed = file("closed.txt", "2026-12-29..2027-01-03 New Year\n\n2026-13-01 typo\n");
    let ics = file(
        "shop.ics",
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026XXXX\nEND:VEVENT\nEND:VCALENDAR\n",
    );
    let sales = file("sales.txt", "# reps\n090-1234-5678\nfax machine\n");
    let e = errors(&format!(
        "[shop]\nclosed_days = \"{}\"\ncalendar = \"{}\"\n[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nwhen = {{ callers_file = \"{}\" }}\nannounce = \"hello.wav\"\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
        closed.display(),
        ics.display(),
        sales.display()
    ));
    assert_has(
        &e,
        &[
            &format!(
                "{}:3: shop.closed_days: \"2026-13-01\" is not a date (use YYYY-MM-DD) (named at line 7)",
                closed.display()
            ),
            &format!("{}:3: shop.calendar:", ics.display()),
            "(named at line 8)",
            &format!(
                "{}:3: numbers.a.rules[1].when.callers_file: \"fax machine\" is not a phone number",
                sales.display()
            ),
            "(named at line 12)",
        ],
    );
}

#[test]
fn conditions_need_their_shop_settings() {
    let e = errors(
        "[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nwhen = { holiday = true, closed = true, phones_busy = true }\nannounce = \"hello.wav\"\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
    );
    assert_has(
        &e,
        &[
            "shop.toml:9: numbers.a.rules[1].when.holiday: which holidays? add holidays = \"jp\" to [shop]",
            "shop.toml:9: numbers.a.rules[1].when.closed: closed according to what?",
            "shop.toml:8: numbers.a.rules[1].when.phones_busy: tests the phones of this rule's ring step",
        ],
    );
}

#[test]
fn shadowed_rules_and_missing_catch_all() {
    let e = errors(
        "[numbers.a]\nnumber = \"1\"\n\
[[numbers.a.rules]]\nwhen = { days = \"mon-sat\", hours = \"09:00-18:00\" }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nwhen = { days = \"mon-fri\", hours = [\"10:00-12:00\", \"13:00-17:00\"] }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nannounce = \"hello.wav\"\n\
[numbers.b]\nnumber = \"2\"\n[[numbers.b.rules]]\nwhen = { mode = \"busy\" }\nannounce = \"hello.wav\"\n",
    );
    assert_has(
        &e,
        &[
            "shop.toml:11: numbers.a.rules[2]: can never match: rule 1 (mon-sat 09:00-18:00) comes first and matches every call this one would",
            "shop.toml:16: numbers.a.rules[4]: can never match: rule 3 (always)",
            "shop.toml:20: numbers.b.rules[1]: the last rule has a `when`",
        ],
    );
    assert!(!e.contains("rules[3]: can never"), "{e}");
}

#[test]
fn time_ranges_that_never_match() {
    let e = errors(
        "[shop]\nholidays = \"jp\"\n[numbers.a]\nnumber = \"1\"\n\
[[numbers.a.rules]]\nwhen = { dates = \"2026-11-28..2026-11-29\", days = \"mon-fri\" }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nwhen = { dates = \"2026-11-03\", holiday = false }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nwhen = { dates = \"2027-01-03..2026-12-29\", hours = \"10:00-10:00\" }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
    );
    assert_has(
        &e,
        &[
            "shop.toml:10: numbers.a.rules[1].when: can never match: no day in 2026-11-28..2026-11-29 is also mon-fri",
            "shop.toml:13: numbers.a.rules[2].when: can never match: no day in 2026-11-03",
            "shop.toml:17: numbers.a.rules[3].when.dates: \"2027-01-03..2026-12-29\" never matches: it ends before it starts",
            "shop.toml:17: numbers.a.rules[3].when.hours: \"10:00-10:00\" never matches",
        ],
    );
}

#[test]
fn declared_modes() {
    let e = errors(
        "[shop]\nmodes = [\"busy\", \"lunch\"]\n[numbers.a]\nnumber = \"1\"\n\
[[numbers.a.rules]]\nwhen = { mode = \"bussy\" }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nwhen = { mode = \"busy\" }\nannounce = \"hello.wav\"\n\
[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
    );
    assert_has(
        &e,
        &[
            "shop.toml:7: shop.modes: no rule tests mode \"lunch\", so setting it would change nothing",
            "shop.toml:11: numbers.a.rules[1].when.mode: \"bussy\" is not in [shop] modes (busy, lunch)",
        ],
    );
    assert!(!e.contains("mode \"busy\","), "{e}");
}

#[test]
fn suspicious_things_are_warnings() {
    let c = check(&format!(
        "{}[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nwhen = {{ days = \"mon-fri\" }}\nring = {{ phones = [\"desk\"], timeout = \"180s\" }}\nvoicemail = true\n\
[[numbers.a.rules]]\nannounce = \"hello.wav\"\nreject = 486\n",
        phones()
    ))
    .unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    let w = w.join("\n");
    assert_has(
        &w,
        &[
            "shop.toml:8: phones.mobile: no rule rings this phone",
            "shop.toml:15: numbers.a.rules[1].ring.timeout: 180 s is a long time to ring",
            "shop.toml:16: numbers.a.rules[1].voicemail.max_length: not set",
            "shop.toml:19: numbers.a.rules[2].reject: never used",
        ],
    );
    assert!(!w.contains("phones.desk: no rule"), "{w}");
}

#[test]
fn caller_conditions_compile_with_country_code() {
    let c = check(
        "[shop]\ncountry_code = \"1\"\n[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nwhen = { caller = [\"415*\", \"anonymous\"], repeat_caller = { times = 3, within = \"10m\" } }\nannounce = \"hello.wav\"\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
    )
    .unwrap();
    let when = &c.policy.numbers["a"].rules[0].when;
    assert_eq!(when.to_string(), "caller 415*|anonymous, 3+ calls within 10m");
    let e = errors(
        "[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nwhen = { caller = \"fax\", repeat_caller = { times = 1, within = \"1m\" } }\nannounce = \"hello.wav\"\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
    );
    assert_has(
        &e,
        &[
            "shop.toml:9: numbers.a.rules[1].when.caller: \"fax\" is not a phone number",
            "shop.toml:9: numbers.a.rules[1].when.repeat_caller: times must be 2 or more",
        ],
    );
}

#[test]
fn ringback_is_ringing_a_tone_a_country_or_a_prompt() {
    let c = check(&format!(
        "{}[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nwhen = {{ days = \"mon\" }}\nring = {{ phones = [\"desk\"], ringback = \"tone\" }}\n\
[[numbers.a.rules]]\nwhen = {{ days = \"tue\" }}\nring = {{ phones = [\"desk\"], ringback = \"UK\" }}\n\
[[numbers.a.rules]]\nwhen = {{ days = \"wed\" }}\nring = {{ phones = [\"desk\"], ringback = \"hello.wav\" }}\n\
[[numbers.a.rules]]\nring = {{ phones = [\"desk\"] }}\n",
        phones()
    ))
    .unwrap();
    let ringbacks: Vec<String> = c.policy.numbers["a"]
        .rules
        .iter()
        .map(|r| match &r.plan.steps[0] {
            Action::Ring(ring) => format!("{:?}", ring.ringback),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ringbacks[..2],
        ["Tone(\"jp\")", "Tone(\"uk\")"],
        "the shop is in Japan (+81)"
    );
    assert!(
        ringbacks[2].starts_with("Prompt(PromptRef { name: \"hello.wav\""),
        "{}",
        ringbacks[2]
    );
    assert_eq!(ringbacks[3], "Ringing");
    assert!(
        c.prompts.get("hello.wav").is_some(),
        "the looped prompt is in the library"
    );
    assert_eq!(
        c.policy.numbers["a"].rules[0].plan.describe(),
        "ring desk together (30 s, ringback tone jp)"
    );

    // Lines: 6-10 phones, 11 [numbers.a], 14 and 16 the ring steps.
    let e = errors(&format!(
        "{}[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nring = {{ phones = [\"desk\"], ringback = \"fr\" }}\n\
[[numbers.a.rules]]\nring = {{ phones = [\"desk\"], ringback = \"beep\" }}\n",
        phones()
    ));
    assert_has(
        &e,
        &[
            "shop.toml:14: numbers.a.rules[1].ring.ringback: no ringback tone known for \"fr\": use \"jp\", \"us\", \"uk\"",
            "shop.toml:16: numbers.a.rules[2].ring.ringback: \"beep\": use \"ringing\", \"tone\", a country",
        ],
    );
    let e = errors(&format!(
        "[shop]\ncountry_code = \"33\"\n{}[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nring = {{ phones = [\"desk\"], ringback = \"tone\" }}\n",
        phones()
    ));
    assert_has(&e, &["no ringback tone known for country code +33"]);
}
