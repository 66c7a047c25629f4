//! The owner's TOML file: schema, loading, and validation with file:line
//! errors. A loaded config compiles into an immutable [`Policy`] plus the
//! engine settings; a config with any error is refused whole.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::media::prompt::{self, Prompt};
use crate::policy::{Action, DaySet, HourRange, NumberPolicy, Policy, Rule, When};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    shop: ShopSection,
    sip: SipSection,
    #[serde(default)]
    prompts: PromptsSection,
    #[serde(default)]
    records: RecordsSection,
    #[serde(default)]
    numbers: BTreeMap<String, Spanned<NumberSection>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShopSection {
    name: Option<String>,
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipSection {
    listen: Spanned<String>,
    advertise: Option<Spanned<String>>,
    #[serde(default = "default_rtp_ports")]
    rtp_ports: Spanned<String>,
    user_agent: Option<String>,
    max_message_bytes: Option<Spanned<usize>>,
}

fn default_rtp_ports() -> Spanned<String> {
    Spanned::new(0..0, "20000-20999".to_string())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PromptsSection {
    dir: Option<String>,
    max_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecordsSection {
    call_log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NumberSection {
    /// The number as the provider delivers it (e.g. "0501110001").
    number: Spanned<String>,
    label: Option<String>,
    #[serde(default)]
    rules: Vec<Spanned<RuleSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSection {
    when: Option<WhenSection>,
    // Actions: exactly one per rule.
    announce: Option<Spanned<String>>,
    ring: Option<Spanned<Vec<String>>>,
    voicemail: Option<Spanned<toml::Value>>,
    // Announcement options.
    repeat: Option<Spanned<u32>>,
    answer_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenSection {
    days: Option<Spanned<String>>,
    hours: Option<Spanned<String>>,
}

/// Engine settings that are not routing policy.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The address we put in Contact and SDP.
    pub advertise: IpAddr,
    pub rtp_ports: (u16, u16),
    pub user_agent: String,
    pub max_message_bytes: usize,
    pub call_log: PathBuf,
}

/// A loaded, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub settings: Settings,
    pub policy: Arc<Policy>,
}

/// One problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems found in one file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn line_of(&self, span: &std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.source.len());
        self.source[..end].matches('\n').count() + 1
    }

    fn error(
        &mut self,
        span: &std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = if span.is_empty() && span.start == 0 {
            0
        } else {
            self.line_of(span)
        };
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Parse a duration like "20s", "1.5s", "500ms", "2m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| t.split_at(i))
        .unwrap_or((t, ""));
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"20s\" or \"500ms\""))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit (use ms, s or m)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range like \"20000-20999\"");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a < 1024 || b < a {
        return Err(format!("{text:?}: need 1024 <= first <= last"));
    }
    if (b - a) < 1 {
        return Err(format!("{text:?}: need at least two ports"));
    }
    Ok((a, b))
}

/// Load and validate a config file, loading every prompt it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    parse(path, &source)
}

/// Validate config text (`path` names the file in errors and anchors relative paths).
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    let mut ck = Checker {
        file: path,
        source,
        errors: Vec::new(),
    };
    let file: File = match toml::from_str(source) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().to_string();
            let line = if span == (0..0) { 1 } else { ck.line_of(&span) };
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line,
                key: String::new(),
                message,
            }]));
        }
    };
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();

    // [shop]
    let timezone = match &file.shop.timezone {
        None => jiff::tz::TimeZone::UTC,
        Some(tz) => match jiff::tz::TimeZone::get(tz.get_ref()) {
            Ok(z) => z,
            Err(_) => {
                ck.error(
                    &tz.span(),
                    "shop.timezone",
                    format!(
                        "unknown time zone {:?} (use an IANA name like \"Asia/Tokyo\")",
                        tz.get_ref()
                    ),
                );
                jiff::tz::TimeZone::UTC
            }
        },
    };

    // [sip]
    let listen = match file.sip.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            ck.error(
                &file.sip.listen.span(),
                "sip.listen",
                "not an address:port like \"127.0.0.1:5060\" or \"0.0.0.0:5060\"",
            );
            "127.0.0.1:5060".parse().expect("literal")
        }
    };
    let advertise = match &file.sip.advertise {
        Some(a) => a.get_ref().parse::<IpAddr>().unwrap_or_else(|_| {
            ck.error(&a.span(), "sip.advertise", "not an IP address");
            listen.ip()
        }),
        None if listen.ip().is_unspecified() => {
            ck.error(
                &file.sip.listen.span(),
                "sip.listen",
                "listening on all addresses needs sip.advertise = \"<this machine's IP>\" for Contact and SDP",
            );
            listen.ip()
        }
        None => listen.ip(),
    };
    let rtp_ports = parse_port_range(file.sip.rtp_ports.get_ref()).unwrap_or_else(|e| {
        ck.error(&file.sip.rtp_ports.span(), "sip.rtp_ports", e);
        (20000, 20999)
    });
    let max_message_bytes = match &file.sip.max_message_bytes {
        Some(m) if !(1500..=65_535).contains(m.get_ref()) => {
            ck.error(
                &m.span(),
                "sip.max_message_bytes",
                "must be between 1500 and 65535",
            );
            8192
        }
        Some(m) => *m.get_ref(),
        None => 8192,
    };

    // [prompts]
    let prompt_dir = base.join(file.prompts.dir.as_deref().unwrap_or("../prompts"));
    let max_prompt = Duration::from_secs(file.prompts.max_seconds.unwrap_or(300));
    let mut prompts: HashMap<PathBuf, Arc<Prompt>> = HashMap::new();

    // [numbers.*]
    let mut numbers = BTreeMap::new();
    let mut seen_numbers: HashMap<String, String> = HashMap::new();
    if file.numbers.is_empty() {
        ck.error(
            &(0..0),
            "numbers",
            "no numbers configured: add a [numbers.<line>] table",
        );
    }
    for (name, section) in &file.numbers {
        let span = section.span();
        let section = section.get_ref();
        let key = format!("numbers.{name}");
        let number = section.number.get_ref().trim().to_string();
        if number.is_empty()
            || !number
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c))
        {
            ck.error(
                &section.number.span(),
                format!("{key}.number"),
                "must be the number as dialled, e.g. \"0501110001\"",
            );
        }
        if let Some(other) = seen_numbers.insert(number.clone(), name.clone()) {
            ck.error(
                &section.number.span(),
                format!("{key}.number"),
                format!("same number as numbers.{other}"),
            );
        }
        if section.rules.is_empty() {
            ck.error(
                &span,
                key.clone(),
                "no rules: add at least one [[numbers.NAME.rules]] with an action",
            );
        }
        let mut rules = Vec::new();
        for (i, rule) in section.rules.iter().enumerate() {
            let rkey = format!("{key}.rules[{}]", i + 1);
            if let Some(r) =
                compile_rule(&mut ck, &rkey, rule, &prompt_dir, max_prompt, &mut prompts)
            {
                rules.push(r);
            }
        }
        if let Some(last) = section.rules.last()
            && last.get_ref().when.is_some()
        {
            ck.error(
                &last.span(),
                format!("{key}.rules[{}]", section.rules.len()),
                "the last rule has a `when`, so some calls would match nothing; add a final rule without `when`",
            );
        }
        numbers.insert(
            name.clone(),
            NumberPolicy {
                name: name.clone(),
                number,
                label: section.label.clone().unwrap_or_else(|| name.clone()),
                rules,
            },
        );
    }

    if !ck.errors.is_empty() {
        ck.errors.sort_by_key(|e| e.line);
        return Err(ConfigErrors(ck.errors));
    }
    let call_log = base.join(
        file.records
            .call_log
            .as_deref()
            .unwrap_or("../var/calls.jsonl"),
    );
    Ok(Config {
        path: path.to_owned(),
        settings: Settings {
            listen,
            advertise,
            rtp_ports,
            user_agent: file
                .sip
                .user_agent
                .clone()
                .unwrap_or_else(|| "denwa".into()),
            max_message_bytes,
            call_log,
        },
        policy: Arc::new(Policy {
            shop_name: file.shop.name.clone().unwrap_or_else(|| "shop".into()),
            timezone,
            numbers,
        }),
    })
}

fn compile_rule(
    ck: &mut Checker,
    key: &str,
    rule: &Spanned<RuleSection>,
    prompt_dir: &Path,
    max_prompt: Duration,
    prompts: &mut HashMap<PathBuf, Arc<Prompt>>,
) -> Option<Rule> {
    let span = rule.span();
    let rule = rule.get_ref();
    let when = rule
        .when
        .as_ref()
        .map(|w| compile_when(ck, key, w))
        .unwrap_or_default();
    let actions = [
        rule.announce.is_some(),
        rule.ring.is_some(),
        rule.voicemail.is_some(),
    ];
    match actions.iter().filter(|a| **a).count() {
        0 => {
            ck.error(
                &span,
                key,
                "no action: give exactly one of announce = \"file.wav\", ring, voicemail",
            );
            return None;
        }
        1 => {}
        _ => {
            ck.error(
                &span,
                key,
                "more than one action: give exactly one of announce, ring, voicemail",
            );
            return None;
        }
    }
    if let Some(ring) = &rule.ring {
        ck.error(
            &ring.span(),
            format!("{key}.ring"),
            "ringing staff phones is not available in this version yet (it needs the staff-phone registrar); use announce for now",
        );
        return None;
    }
    if let Some(vm) = &rule.voicemail {
        ck.error(
            &vm.span(),
            format!("{key}.voicemail"),
            "voicemail is not available in this version yet; use announce for now",
        );
        return None;
    }
    let announce = rule.announce.as_ref()?;
    let file = prompt_dir.join(announce.get_ref());
    let prompt = match prompts.get(&file) {
        Some(p) => p.clone(),
        None => match prompt::load(&file, max_prompt) {
            Ok(p) => {
                let p = Arc::new(p);
                prompts.insert(file.clone(), p.clone());
                p
            }
            Err(e) => {
                ck.error(&announce.span(), format!("{key}.announce"), e.to_string());
                return None;
            }
        },
    };
    let repeat = match &rule.repeat {
        Some(r) if !(1..=20).contains(r.get_ref()) => {
            ck.error(
                &r.span(),
                format!("{key}.repeat"),
                "must be between 1 and 20",
            );
            1
        }
        Some(r) => *r.get_ref(),
        None => 1,
    };
    let answer_after = match &rule.answer_after {
        Some(d) => match parse_duration(d.get_ref()) {
            Ok(v) if v <= Duration::from_secs(60) => v,
            Ok(_) => {
                ck.error(&d.span(), format!("{key}.answer_after"), "at most 60s");
                Duration::ZERO
            }
            Err(e) => {
                ck.error(&d.span(), format!("{key}.answer_after"), e);
                Duration::ZERO
            }
        },
        None => Duration::ZERO,
    };
    Some(Rule {
        when,
        action: Action::Announce {
            prompt,
            repeat,
            answer_after,
        },
    })
}

fn compile_when(ck: &mut Checker, key: &str, w: &WhenSection) -> When {
    let days = w.days.as_ref().and_then(|d| {
        DaySet::parse(d.get_ref())
            .map_err(|e| ck.error(&d.span(), format!("{key}.when.days"), e))
            .ok()
    });
    let hours = w.hours.as_ref().and_then(|h| {
        HourRange::parse(h.get_ref())
            .map_err(|e| ck.error(&h.span(), format!("{key}.when.hours"), e))
            .ok()
    });
    When { days, hours }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("denwa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        crate::media::prompt::tests::write_tone(&dir.join("hello.wav"), spec, 0.5, 440.0, 0.3);
        dir
    }

    fn check(body: &str) -> Result<Config, ConfigErrors> {
        let dir = prompt_dir();
        let text = format!(
            "[sip]\nlisten = \"127.0.0.1:5060\"\n[prompts]\ndir = \"{}\"\n{body}",
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
        let (Action::Announce { prompt: a, .. }, Action::Announce { prompt: b, .. }) =
            (&p.rules[0].action, &p.rules[1].action);
        assert!(Arc::ptr_eq(a, b));
    }

    #[test]
    fn unknown_key_names_its_line() {
        let e = check("[numbers.public]\nnumber = \"1\"\ncolour = \"red\"\n").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, 7, "{e}");
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
            "shop.toml:8: numbers.public.rules[1].when.days: \"funday\" is not a day",
            "shop.toml:8: numbers.public.rules[1].when.hours",
            "shop.toml:9: numbers.public.rules[1].announce: prompt",
            "missing.wav",
            "shop.toml:7: numbers.public.rules[1]: the last rule has a `when`",
            "shop.toml:6: numbers.public.number: same number as numbers.other",
            "shop.toml:14: numbers.other.rules[1].repeat",
            "shop.toml:15: numbers.other.rules[1].answer_after",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn future_actions_are_refused_clearly() {
        let e = check(
            "[numbers.public]\nnumber = \"1\"\n[[numbers.public.rules]]\nring = [\"desk\"]\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("rules[1].ring: ringing staff phones is not available"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse(Path::new("x.toml"), "[sip]\nlisten = \n").unwrap_err();
        assert_eq!(e.0[0].line, 2, "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
