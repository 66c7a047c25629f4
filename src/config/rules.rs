//! `[[numbers.NAME.rules]]`: the `when` conditions and the steps (ring →
//! voicemail → announce → reject), compiled into policy rules.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, parse_duration};
use crate::media::prompt::{self, Prompt, PromptLibrary};
use crate::media::tone;
use crate::policy::caller::{CallerList, CallerPattern};
use crate::policy::when::{CallerTest, DateSpan, RepeatCaller};
use crate::policy::{
    Action, DaySet, HourRange, Hours, Plan, PromptRef, RingOrder, RingStep, Ringback, Rule, Shop, VoicemailStep, When,
};

/// A string or a list of strings.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSection {
    pub when: Option<Spanned<WhenSection>>,
    /// What staff phones show for calls by this rule.
    label: Option<Spanned<String>>,
    // Steps, run in this order whatever order they are written in.
    ring: Option<Spanned<RingSection>>,
    voicemail: Option<Spanned<toml::Value>>,
    announce: Option<Spanned<String>>,
    reject: Option<Spanned<u16>>,
    // Announcement options.
    repeat: Option<Spanned<u32>>,
    answer_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhenSection {
    days: Option<Spanned<String>>,
    hours: Option<Spanned<OneOrMany>>,
    dates: Option<Spanned<OneOrMany>>,
    holiday: Option<Spanned<bool>>,
    closed: Option<Spanned<bool>>,
    caller: Option<Spanned<OneOrMany>>,
    callers_file: Option<Spanned<OneOrMany>>,
    anonymous: Option<Spanned<bool>>,
    pub mode: Option<Spanned<String>>,
    active_calls_at_least: Option<Spanned<u32>>,
    shop_calls_at_least: Option<Spanned<u32>>,
    phones_busy: Option<Spanned<bool>>,
    repeat_caller: Option<Spanned<RepeatSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepeatSection {
    times: u32,
    within: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingSection {
    phones: Spanned<Vec<String>>,
    order: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    per_phone: Option<Spanned<String>>,
    ringback: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoicemailSection {
    greeting: Option<String>,
    max_length: Option<String>,
    min_length: Option<String>,
    silence: Option<String>,
    goodbye: Option<String>,
}

/// Prompts named so far: each file is loaded once and shared.
pub(super) struct Prompts<'a> {
    pub dir: PathBuf,
    pub max: Duration,
    pub loaded: HashMap<PathBuf, Arc<Prompt>>,
    pub library: &'a mut PromptLibrary,
}

impl Prompts<'_> {
    pub fn load(&mut self, ck: &mut Checker, span: &Range<usize>, key: &str, name: &str) -> Option<PromptRef> {
        let file = self.dir.join(name);
        let prompt = match self.loaded.get(&file) {
            Some(p) => p.clone(),
            None => match prompt::load(&file, self.max) {
                Ok(p) => {
                    let p = Arc::new(p);
                    self.loaded.insert(file.clone(), p.clone());
                    p
                }
                Err(e) => {
                    ck.error(span, key, e.to_string());
                    return None;
                }
            },
        };
        let name: Arc<str> = name.into();
        self.library.insert(name.clone(), prompt.clone());
        Some(PromptRef {
            name,
            duration: prompt.duration(),
        })
    }
}

/// What rules refer to outside themselves.
pub(super) struct RuleContext<'a> {
    pub base: &'a Path,
    pub shop: &'a Shop,
    pub has_closures: bool,
    pub phones: &'a [String],
    pub callers_files: &'a mut HashMap<PathBuf, Option<Arc<CallerList>>>,
}

fn duration_in(
    ck: &mut Checker,
    value: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    max: Duration,
) -> Duration {
    match value {
        None => default,
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d <= max => d,
            Ok(_) => {
                ck.error(&v.span(), key, format!("at most {} s", max.as_secs()));
                default
            }
            Err(e) => {
                ck.error(&v.span(), key, e);
                default
            }
        },
    }
}

pub(super) fn compile_rule(
    ck: &mut Checker,
    key: &str,
    rule: &Spanned<RuleSection>,
    prompts: &mut Prompts,
    cx: &mut RuleContext,
) -> Option<Rule> {
    let span = rule.span();
    let rule = rule.get_ref();
    let when = rule
        .when
        .as_ref()
        .map(|w| compile_when(ck, key, w, cx))
        .unwrap_or_default();
    let mut steps = Vec::new();
    let mut ok = true;
    if let Some(ring) = &rule.ring {
        match compile_ring(ck, &format!("{key}.ring"), ring, prompts, cx) {
            Some(r) => steps.push(Action::Ring(r)),
            None => ok = false,
        }
    }
    if let Some(vm) = &rule.voicemail {
        match compile_voicemail(ck, &format!("{key}.voicemail"), vm, prompts) {
            Some(Some(v)) => steps.push(Action::Voicemail(v)),
            Some(None) => {}
            None => ok = false,
        }
    }
    if let Some(announce) = &rule.announce {
        let repeat = match &rule.repeat {
            Some(r) if !(1..=20).contains(r.get_ref()) => {
                ck.error(&r.span(), format!("{key}.repeat"), "must be between 1 and 20");
                1
            }
            Some(r) => *r.get_ref(),
            None => 1,
        };
        let answer_after = duration_in(
            ck,
            rule.answer_after.as_ref(),
            &format!("{key}.answer_after"),
            Duration::ZERO,
            Duration::from_secs(60),
        );
        match prompts.load(ck, &announce.span(), &format!("{key}.announce"), announce.get_ref()) {
            Some(prompt) => steps.push(Action::Announce {
                prompt,
                repeat,
                answer_after,
            }),
            None => ok = false,
        }
    } else if let Some(r) = rule
        .repeat
        .as_ref()
        .map(|r| r.span())
        .or(rule.answer_after.as_ref().map(|a| a.span()))
    {
        ck.error(
            &r,
            key,
            "repeat and answer_after belong to an announce step; add announce = \"file.wav\" or remove them",
        );
    }
    if let Some(reject) = &rule.reject {
        let status = *reject.get_ref();
        if !(400..=699).contains(&status) {
            ck.error(
                &reject.span(),
                format!("{key}.reject"),
                "must be a SIP failure status, 400-699 (e.g. 486 busy, 603 decline)",
            );
            ok = false;
        } else {
            if rule.announce.is_some() {
                ck.warn(
                    &reject.span(),
                    format!("{key}.reject"),
                    "never used: the announce step before it always ends the call; remove one of them",
                );
            }
            steps.push(Action::Reject { status });
        }
    }
    if steps.is_empty() && ok {
        ck.error(
            &span,
            key,
            "no step: give ring = { phones = [...] }, voicemail, announce = \"file.wav\" or reject = 603",
        );
        return None;
    }
    if when.phones_busy.is_some() && rule.ring.is_none() {
        ck.error(
            &span,
            format!("{key}.when.phones_busy"),
            "tests the phones of this rule's ring step, and the rule has none; add ring = { phones = [...] }",
        );
    }
    if !ok {
        return None;
    }
    Some(Rule {
        when,
        plan: Plan {
            steps,
            label: rule.label.as_ref().map(|l| l.get_ref().clone()),
        },
    })
}

fn compile_ring(
    ck: &mut Checker,
    key: &str,
    ring: &Spanned<RingSection>,
    prompts: &mut Prompts,
    cx: &RuleContext,
) -> Option<RingStep> {
    let r = ring.get_ref();
    let mut ok = true;
    if r.phones.get_ref().is_empty() {
        ck.error(
            &r.phones.span(),
            format!("{key}.phones"),
            "empty: name at least one [phones.NAME]",
        );
        ok = false;
    }
    for phone in r.phones.get_ref() {
        if !cx.phones.contains(phone) {
            let known = if cx.phones.is_empty() {
                "no [phones.NAME] sections exist yet".to_string()
            } else {
                format!("known phones: {}", cx.phones.join(", "))
            };
            ck.error(
                &r.phones.span(),
                format!("{key}.phones"),
                format!("unknown phone {phone:?}: add a [phones.{phone}] section or fix the name ({known})"),
            );
            ok = false;
        }
    }
    let order = match r.order.as_ref().map(|o| (o, o.get_ref().as_str())) {
        None | Some((_, "together")) => RingOrder::Simultaneous,
        Some((_, "in-turn")) => RingOrder::Sequential,
        Some((o, other)) => {
            ck.error(
                &o.span(),
                format!("{key}.order"),
                format!("{other:?}: use \"together\" or \"in-turn\""),
            );
            RingOrder::Simultaneous
        }
    };
    let day = Duration::from_secs(600);
    let timeout = duration_in(
        ck,
        r.timeout.as_ref(),
        &format!("{key}.timeout"),
        Duration::from_secs(30),
        day,
    );
    let per_phone = duration_in(
        ck,
        r.per_phone.as_ref(),
        &format!("{key}.per_phone"),
        Duration::from_secs(15),
        day,
    );
    if timeout > Duration::from_secs(120) {
        ck.warn(
            &r.timeout.as_ref().map_or(ring.span(), |t| t.span()),
            format!("{key}.timeout"),
            format!(
                "{} s is a long time to ring: most callers hang up within a minute, and providers often cut calls at 2-3 minutes; consider \"30s\" and a voicemail step",
                timeout.as_secs()
            ),
        );
    }
    if order == RingOrder::Sequential && per_phone >= timeout && r.phones.get_ref().len() > 1 {
        ck.warn(
            &r.per_phone.as_ref().map_or(ring.span(), |t| t.span()),
            format!("{key}.per_phone"),
            "the whole step times out before the second phone rings; lower per_phone or raise timeout",
        );
    }
    if order == RingOrder::Simultaneous && r.per_phone.is_some() {
        ck.warn(
            &ring.span(),
            format!("{key}.per_phone"),
            "only used with order = \"in-turn\"",
        );
    }
    let ringback = match r.ringback.as_ref() {
        None => Ringback::Ringing,
        Some(rb) => match compile_ringback(ck, &format!("{key}.ringback"), rb, cx.shop, prompts) {
            Some(rb) => rb,
            None => {
                ok = false;
                Ringback::Ringing
            }
        },
    };
    ok.then(|| RingStep {
        phones: r.phones.get_ref().clone(),
        order,
        timeout,
        per_phone,
        ringback,
    })
}

/// `ringback`: "ringing" (180), "tone" (the shop's country's tone), a
/// country ("jp", "us", "uk") or a prompt file looped as early media.
fn compile_ringback(
    ck: &mut Checker,
    key: &str,
    rb: &Spanned<String>,
    shop: &Shop,
    prompts: &mut Prompts,
) -> Option<Ringback> {
    let known = tone::known_countries().join("\", \"");
    let value = rb.get_ref().as_str();
    match value {
        "ringing" => Some(Ringback::Ringing),
        "tone" => {
            let code = shop.number_plan.country_code();
            let country = match code {
                "81" => Some("jp"),
                "1" => Some("us"),
                "44" => Some("uk"),
                _ => None,
            };
            match country {
                Some(c) => Some(Ringback::Tone(c.to_string())),
                None => {
                    ck.error(
                        &rb.span(),
                        key,
                        format!(
                            "no ringback tone known for country code +{code}: name one (\"{known}\"), or use \"ringing\""
                        ),
                    );
                    None
                }
            }
        }
        file if file.ends_with(".wav") => prompts.load(ck, &rb.span(), key, file).map(Ringback::Prompt),
        country if tone::cadence(country).is_some() => {
            Some(Ringback::Tone(tone::cadence(country)?.country.to_string()))
        }
        country if country.len() == 2 && country.chars().all(|c| c.is_ascii_alphabetic()) => {
            ck.error(
                &rb.span(),
                key,
                format!("no ringback tone known for {country:?}: use \"{known}\", or \"ringing\""),
            );
            None
        }
        other => {
            ck.error(
                &rb.span(),
                key,
                format!("{other:?}: use \"ringing\", \"tone\", a country (\"{known}\") or a prompt file \"name.wav\""),
            );
            None
        }
    }
}

/// Some(None): `voicemail = false`, no step. None: an error was reported.
fn compile_voicemail(
    ck: &mut Checker,
    key: &str,
    vm: &Spanned<toml::Value>,
    prompts: &mut Prompts,
) -> Option<Option<VoicemailStep>> {
    let span = vm.span();
    let section = match vm.get_ref() {
        toml::Value::Boolean(false) => return Some(None),
        toml::Value::Boolean(true) => VoicemailSection {
            greeting: None,
            max_length: None,
            min_length: None,
            silence: None,
            goodbye: None,
        },
        value @ toml::Value::Table(_) => match VoicemailSection::deserialize(value.clone()) {
            Ok(s) => s,
            Err(e) => {
                ck.error(&span, key, e.message().to_string());
                return None;
            }
        },
        _ => {
            ck.error(
                &span,
                key,
                "use voicemail = true, or a table like { greeting = \"vm.wav\", max_length = \"2m\" }",
            );
            return None;
        }
    };
    let mut duration = |text: &Option<String>, name: &str, default: Duration| match text {
        None => Some(default),
        Some(t) => parse_duration(t)
            .map_err(|e| ck.error(&span, format!("{key}.{name}"), e))
            .ok(),
    };
    let max_length = duration(&section.max_length, "max_length", Duration::from_secs(120));
    let min_length = duration(&section.min_length, "min_length", Duration::from_secs(2));
    let silence = duration(&section.silence, "silence", Duration::from_secs(10));
    let (max_length, min_length, silence) = (max_length?, min_length?, silence?);
    if section.max_length.is_none() {
        ck.warn(
            &span,
            format!("{key}.max_length"),
            "not set: messages are cut at 2 minutes; write max_length = \"2m\" (or longer) to choose",
        );
    }
    if min_length >= max_length {
        ck.error(&span, format!("{key}.min_length"), "must be shorter than max_length");
        return None;
    }
    let mut prompt = |name: &Option<String>, field: &str| match name {
        None => Some(None),
        Some(n) => prompts.load(ck, &span, &format!("{key}.{field}"), n).map(Some),
    };
    let greeting = prompt(&section.greeting, "greeting");
    let goodbye = prompt(&section.goodbye, "goodbye");
    Some(Some(VoicemailStep {
        greeting: greeting?,
        max_length,
        min_length,
        silence,
        goodbye: goodbye?,
    }))
}

fn compile_when(ck: &mut Checker, key: &str, w: &Spanned<WhenSection>, cx: &mut RuleContext) -> When {
    let w = w.get_ref();
    let key = format!("{key}.when");
    let mut when = When::default();
    if let Some(d) = &w.days {
        when.days = DaySet::parse(d.get_ref())
            .map_err(|e| ck.error(&d.span(), format!("{key}.days"), e))
            .ok();
    }
    if let Some(h) = &w.hours {
        let ranges: Vec<HourRange> = h
            .get_ref()
            .items()
            .into_iter()
            .filter_map(|t| {
                HourRange::parse(t)
                    .map_err(|e| ck.error(&h.span(), format!("{key}.hours"), e))
                    .ok()
            })
            .collect();
        if !ranges.is_empty() {
            when.hours = Some(Hours(ranges));
        }
    }
    if let Some(d) = &w.dates {
        when.dates = d
            .get_ref()
            .items()
            .into_iter()
            .filter_map(|t| {
                DateSpan::parse(t)
                    .map_err(|e| ck.error(&d.span(), format!("{key}.dates"), e))
                    .ok()
            })
            .collect();
    }
    if let Some(h) = &w.holiday {
        match cx.shop.holidays {
            Some(rules) => when.holiday = Some((*h.get_ref(), rules)),
            None => ck.error(
                &h.span(),
                format!("{key}.holiday"),
                "which holidays? add holidays = \"jp\" to [shop]",
            ),
        }
    }
    if let Some(c) = &w.closed {
        if cx.has_closures {
            when.closed = Some((*c.get_ref(), cx.shop.closures.clone()));
        } else {
            ck.error(
                &c.span(),
                format!("{key}.closed"),
                "closed according to what? add closed_days = \"closed-days.txt\" or calendar = \"shop.ics\" to [shop]",
            );
        }
    }
    let mut test = CallerTest {
        patterns: Vec::new(),
        files: Vec::new(),
    };
    if let Some(c) = &w.caller {
        for item in c.get_ref().items() {
            match CallerPattern::parse(item, &cx.shop.number_plan) {
                Ok(p) => test.patterns.push(p),
                Err(e) => ck.error(&c.span(), format!("{key}.caller"), e),
            }
        }
    }
    if let Some(files) = &w.callers_file {
        for name in files.get_ref().items() {
            let path = cx.base.join(name);
            let list = cx
                .callers_files
                .entry(path.clone())
                .or_insert_with(|| {
                    let at = ck.line_of(&files.span());
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| {
                            ck.error(
                                &files.span(),
                                format!("{key}.callers_file"),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })
                        .ok()?;
                    CallerList::parse(&text, &cx.shop.number_plan)
                        .map_err(|e| {
                            ck.error_in(
                                &path,
                                e.line,
                                format!("{key}.callers_file"),
                                format!(
                                    "{} (named at line {at}); fix the line, or comment it out with #",
                                    e.message
                                ),
                            )
                        })
                        .ok()
                        .map(Arc::new)
                })
                .clone();
            if let Some(list) = list {
                test.files.push((name.to_string(), list));
            }
        }
    }
    if !test.patterns.is_empty() || !test.files.is_empty() {
        when.caller = Some(test);
    }
    when.anonymous = w.anonymous.as_ref().map(|a| *a.get_ref());
    when.mode = w.mode.as_ref().map(|m| m.get_ref().clone());
    when.active_calls_at_least = w.active_calls_at_least.as_ref().map(|n| *n.get_ref());
    when.shop_calls_at_least = w.shop_calls_at_least.as_ref().map(|n| *n.get_ref());
    when.phones_busy = w.phones_busy.as_ref().map(|b| *b.get_ref());
    if let Some(r) = &w.repeat_caller {
        let section = r.get_ref();
        match parse_duration(&section.within) {
            Ok(within) if section.times >= 2 && !within.is_zero() => {
                when.repeat_caller = Some(RepeatCaller {
                    times: section.times,
                    within,
                })
            }
            Ok(_) => ck.error(
                &r.span(),
                format!("{key}.repeat_caller"),
                "times must be 2 or more (this call counts as one) and within longer than zero",
            ),
            Err(e) => ck.error(&r.span(), format!("{key}.repeat_caller.within"), e),
        }
    }
    when
}
