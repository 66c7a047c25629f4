//! Config loading: schema, settings, provider accounts.

use super::*;
use crate::policy::Action;

pub(super) fn prompt_dir() -> PathBuf {
    // One directory per call: tests run in parallel and rewrite the prompt.
    let dir = crate::records::test_dir("config");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    crate::media::prompt::tests::write_tone(&dir.join("hello.wav"), spec, 0.5, 440.0, 0.3);
    dir
}

pub(super) fn check(body: &str) -> Result<Config, ConfigErrors> {
    let dir = prompt_dir();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:5060\"\ntrusted_sources = [\"127.0.0.0/8\"]\n[prompts]\ndir = \"{}\"\n{body}",
        dir.display()
    );
    parse(Path::new("shop.toml"), &text)
}

#[test]
fn good_config_compiles() {
    let c = check(
            "[numbers.public]\nnumber = \"0501110001\"\n\
[[numbers.public.rules]]\nwhen = { days = \"mon-fri\", hours = \"10:00-17:00\" }\nannounce = \"hello.wav\"\nanswer_after = \"2s\"\n\
[[numbers.public.rules]]\nannounce = \"hello.wav\"\nrepeat = 2\n",
        )
        .unwrap();
    let p = &c.policy.numbers["public"];
    assert_eq!(p.rules.len(), 2);
    assert_eq!(c.settings.advertise, "127.0.0.1".parse::<IpAddr>().unwrap());
    // One prompt file is loaded once and shared.
    let ([Action::Announce { prompt: a, .. }], [Action::Announce { prompt: b, .. }]) =
        (&p.rules[0].plan.steps[..], &p.rules[1].plan.steps[..])
    else {
        panic!("two announcements")
    };
    assert_eq!(a, b);
    assert!(c.prompts.get(&a.name).is_some_and(|p| p.duration() == a.duration));
}

#[test]
fn unknown_key_names_its_line() {
    let e = check("[numbers.public]\nnumber = \"1\"\ncolour = \"red\"\n").unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, 8, "{e}");
    assert!(e.0[0].message.contains("colour"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let e = check(
            "[numbers.public]\nnumber = \"1\"\n\
[[numbers.public.rules]]\nwhen = { days = \"monday-funday\", hours = \"25:00-26:00\" }\nannounce = \"missing.wav\"\n\
[numbers.other]\nnumber = \"1\"\n[[numbers.other.rules]]\nannounce = \"hello.wav\"\nrepeat = 0\nanswer_after = \"soon\"\n",
        )
        .unwrap_err();
    let text = e.to_string();
    for needle in [
        "shop.toml:9: numbers.public.rules[1].when.days: \"funday\" is not a day",
        "shop.toml:9: numbers.public.rules[1].when.hours",
        "shop.toml:10: numbers.public.rules[1].announce: prompt",
        "missing.wav",
        "shop.toml:8: numbers.public.rules[1]: the last rule has a `when`",
        "shop.toml:7: numbers.public.number: same number as numbers.other",
        "shop.toml:15: numbers.other.rules[1].repeat",
        "shop.toml:16: numbers.other.rules[1].answer_after",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn syntax_error_has_line() {
    let e = parse(Path::new("x.toml"), "[sip]\nlisten = \n").unwrap_err();
    assert_eq!(e.0[0].line, 2, "{e}");
}

#[test]
fn provider_registration_and_secrets() {
    // SAFETY: tests in this module do not read this variable concurrently.
    unsafe { std::env::set_var("DENWA_TEST_PW_PUBLIC", "hunter2") };
    let c = check(
            "[provider]\nregistrar = \"127.0.0.1:5070\"\ndomain = \"provider.test\"\nexpires = 120\nretry_max = \"30s\"\n\
[numbers.public]\nnumber = \"0501110001\"\npassword_env = \"DENWA_TEST_PW_PUBLIC\"\n[[numbers.public.rules]]\nannounce = \"hello.wav\"\n\
[numbers.local]\nnumber = \"9\"\nregister = false\n[[numbers.local.rules]]\nannounce = \"hello.wav\"\n",
        )
        .unwrap();
    let regs = &c.settings.registrations;
    assert_eq!(regs.len(), 1);
    let r = &regs[0];
    assert_eq!(
        (r.user.as_str(), r.auth_user.as_str(), r.password.as_str()),
        ("0501110001", "0501110001", "hunter2")
    );
    assert_eq!(
        (r.domain.as_str(), r.expires, r.retry_max),
        ("provider.test", 120, Duration::from_secs(30))
    );
    assert_eq!(r.destination, "127.0.0.1:5070".parse().unwrap());
    assert_eq!(c.settings.keepalive_method, KeepAlive::Options);
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "secrets never reach Debug output"
    );

    let e = check(
            "[provider]\nregistrar = \"127.0.0.1:5070\"\n[numbers.public]\nnumber = \"1\"\npassword_env = \"DENWA_TEST_UNSET_VAR\"\n\
[[numbers.public.rules]]\nannounce = \"hello.wav\"\n[numbers.other]\nnumber = \"2\"\n[[numbers.other.rules]]\nannounce = \"hello.wav\"\n",
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shop.toml:10: numbers.public.password_env: environment variable DENWA_TEST_UNSET_VAR is not set"),
        "{e}"
    );
    assert!(e.contains("numbers.other: registering needs password_env"), "{e}");
}

#[test]
fn the_owners_tools_load_a_config_whose_secrets_are_not_in_their_shell() {
    let dir = prompt_dir();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:5060\"\n[prompts]\ndir = \"{}\"\n[provider]\nregistrar = \"127.0.0.1:5070\"\n\
[phones.desk]\npassword_env = \"DENWA_TEST_UNSET_DESK\"\n\
[numbers.public]\nnumber = \"1\"\npassword_env = \"DENWA_TEST_UNSET_VAR\"\n[[numbers.public.rules]]\nannounce = \"hello.wav\"\n",
        dir.display()
    );
    let path = dir.join("shop.toml");
    std::fs::write(&path, &text).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.contains("DENWA_TEST_UNSET_VAR is not set") && e.contains("DENWA_TEST_UNSET_DESK is not set"),
        "{e}"
    );
    let c = load_without_secrets(&path).expect("the tools need no secrets");
    assert_eq!(c.policy.numbers.len(), 1);
}

#[test]
fn match_fields() {
    let c = check("[numbers.a]\nnumber = \"1\"\nmatch = [\"to\"]\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n")
        .unwrap();
    let m = c.policy.numbers["a"].match_on;
    assert!(m.to && !m.contact && !m.request_uri);
    let e = check("[numbers.a]\nnumber = \"1\"\nmatch = [\"from\"]\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("numbers.a.match: \"from\" is not one of"), "{e}");
}

#[test]
fn someone_must_be_allowed_to_call() {
    let dir = prompt_dir();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:5060\"\n[prompts]\ndir = \"{}\"\n[numbers.a]\nnumber = \"1\"\n[[numbers.a.rules]]\nannounce = \"hello.wav\"\n",
        dir.display()
    );
    let e = parse(Path::new("shop.toml"), &text).unwrap_err().to_string();
    assert!(e.contains("sip.trusted_sources: nobody may deliver calls"), "{e}");
}

#[test]
fn ip_ranges() {
    let r = IpRange::parse("127.0.0.0/8").unwrap();
    assert!(r.contains("127.1.2.3".parse().unwrap()) && !r.contains("128.0.0.1".parse().unwrap()));
    assert!(r.contains("::ffff:127.0.0.1".parse().unwrap()));
    let one = IpRange::parse("192.0.2.7").unwrap();
    assert!(one.contains("192.0.2.7".parse().unwrap()) && !one.contains("192.0.2.8".parse().unwrap()));
    assert!(
        IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.1".parse().unwrap())
    );
    assert!(IpRange::parse("::1").unwrap().contains("::1".parse().unwrap()));
    assert!(IpRange::parse("10.0.0.0/33").is_err() && IpRange::parse("nope").is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("soon").is_err());
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert!(parse_duration("5d").is_err());
}

#[test]
fn media_threads_default_to_one_and_are_bounded() {
    let rules = "[numbers.public]\nnumber = \"0501110001\"\n[[numbers.public.rules]]\nannounce = \"hello.wav\"\n";
    assert_eq!(check(rules).unwrap().settings.media_threads, 1);
    let two = check(&format!("[media]\nthreads = 2\n{rules}")).unwrap();
    assert_eq!(two.settings.media_threads, 2);
    for bad in ["0", "17", "-1"] {
        let err = check(&format!("[media]\nthreads = {bad}\n{rules}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shop.toml:") && err.contains("media.threads") && err.contains("from 1 to 16"),
            "{err}"
        );
    }
}

#[test]
fn media_realtime_defaults_on_and_can_be_turned_off() {
    let rules = "[numbers.public]\nnumber = \"0501110001\"\n[[numbers.public.rules]]\nannounce = \"hello.wav\"\n";
    assert!(check(rules).unwrap().settings.media_realtime);
    let off = check(&format!("[media]\nrealtime = false\n{rules}")).unwrap();
    assert!(!off.settings.media_realtime);
    let err = check(&format!("[media]\nrealtime = \"yes\"\n{rules}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("shop.toml:"), "a wrong type names file and line: {err}");
}
