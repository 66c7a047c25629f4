//! `[phones.NAME]`: the staff phones rules can ring, compiled into plain
//! data for the engine (the registrar takes the registering ones).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, parse_duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PhoneSection {
    /// What the owner calls it in `denwa status` ("Front desk").
    label: Option<String>,
    /// The phone registers with denwa as user NAME with this password.
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    /// Or: a fixed SIP address that does not register ("sip:desk@192.0.2.5").
    uri: Option<Spanned<String>>,
    /// Or: an outside number, called through the provider.
    number: Option<Spanned<String>>,
    /// How often to check a registered phone is there (OPTIONS); "off" to never.
    qualify: Option<Spanned<String>>,
    /// While it is on a call: "ring" it anyway (call waiting) or "skip" it.
    busy: Option<Spanned<String>>,
}

/// How denwa reaches one staff phone.
#[derive(Clone, PartialEq, Eq)]
pub enum PhoneReach {
    /// It registers with denwa as user `name`, with this digest password.
    Registers { password: String },
    /// A fixed SIP URI; it does not register.
    Fixed { uri: String },
    /// An outside number, dialled through the provider.
    Outside { number: String },
}

impl std::fmt::Debug for PhoneReach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PhoneReach::Registers { .. } => f.write_str("Registers { password: <hidden> }"),
            PhoneReach::Fixed { uri } => write!(f, "Fixed({uri})"),
            PhoneReach::Outside { number } => write!(f, "Outside({number})"),
        }
    }
}

/// What to do with a phone that is already on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Ring it anyway (the phone shows call waiting).
    Ring,
    /// Leave it out of ring steps while it is busy.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub name: String,
    pub label: String,
    pub reach: PhoneReach,
    /// OPTIONS ping interval for registered phones; zero: off.
    pub qualify: Duration,
    pub when_busy: WhenBusy,
}

/// Every staff phone, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phones(pub BTreeMap<String, Phone>);

impl Phones {
    /// The phones that register with denwa, as its registrar takes them.
    pub fn registering(&self) -> std::collections::HashMap<String, crate::sip::registrar::PhoneConfig> {
        self.0
            .values()
            .filter_map(|p| match &p.reach {
                PhoneReach::Registers { password } => Some((
                    p.name.clone(),
                    crate::sip::registrar::PhoneConfig {
                        secret: crate::sip::digest_server::PhoneSecret::password(password.clone()),
                        qualify: (!p.qualify.is_zero()).then_some(p.qualify),
                    },
                )),
                _ => None,
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Phone> {
        self.0.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

pub(super) fn compile_phones(
    ck: &mut Checker,
    sections: &BTreeMap<String, Spanned<PhoneSection>>,
    base: &Path,
) -> Phones {
    let mut phones = BTreeMap::new();
    for (name, section) in sections {
        let key = format!("phones.{name}");
        let span = section.span();
        let s = section.get_ref();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            ck.error(
                &span,
                &key,
                "a phone name is its SIP user name: letters, digits, - _ . only",
            );
        }
        let given = [
            s.password_env.is_some() || s.password_file.is_some(),
            s.uri.is_some(),
            s.number.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 || (s.password_env.is_some() && s.password_file.is_some()) {
            ck.error(
                &span,
                &key,
                "say how to reach it with exactly one of: password_file = \"secrets/NAME\" (or password_env) for a phone that registers, uri = \"sip:…\" for a fixed address, number = \"090…\" for an outside number",
            );
            continue;
        }
        let reach = if let Some(uri) = &s.uri {
            let u = uri.get_ref().trim();
            if !(u.starts_with("sip:") || u.starts_with("sips:")) || !u.contains('@') {
                ck.error(
                    &uri.span(),
                    format!("{key}.uri"),
                    "not a SIP URI like \"sip:desk@192.0.2.5\"",
                );
                continue;
            }
            PhoneReach::Fixed { uri: u.to_string() }
        } else if let Some(number) = &s.number {
            let n = number.get_ref().trim();
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit() || "+- ".contains(c)) {
                ck.error(
                    &number.span(),
                    format!("{key}.number"),
                    "not a phone number like \"090-1234-5678\"",
                );
                continue;
            }
            PhoneReach::Outside {
                number: n.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect(),
            }
        } else {
            let password = match (&s.password_env, &s.password_file) {
                (Some(var), _) => ck.secret_from_env(var, &key, "this phone's SIP password"),
                (None, Some(file)) => ck.secret_from_file(base, file, &key),
                (None, None) => unreachable!("checked above: one of the two"),
            };
            let Some(password) = password else { continue };
            // Tools that load the config without secrets see an empty one.
            let unknown = password.is_empty() && ck.secrets == super::Secrets::Optional;
            if password.len() < 8 && !unknown {
                ck.error(
                    &span,
                    &key,
                    "the phone's password is shorter than 8 characters; choose a longer one",
                );
                continue;
            }
            PhoneReach::Registers { password }
        };
        let qualify = match &s.qualify {
            None => Duration::from_secs(30),
            Some(q) if q.get_ref() == "off" => Duration::ZERO,
            Some(q) => parse_duration(q.get_ref()).unwrap_or_else(|e| {
                ck.error(&q.span(), format!("{key}.qualify"), format!("{e}, or \"off\""));
                Duration::ZERO
            }),
        };
        let when_busy = match s.busy.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "skip")) => WhenBusy::Skip,
            Some((_, "ring")) => WhenBusy::Ring,
            Some((b, other)) => {
                ck.error(
                    &b.span(),
                    format!("{key}.busy"),
                    format!("{other:?}: use \"ring\" or \"skip\""),
                );
                WhenBusy::Skip
            }
        };
        phones.insert(
            name.clone(),
            Phone {
                name: name.clone(),
                label: s.label.clone().unwrap_or_else(|| name.clone()),
                reach,
                qualify,
                when_busy,
            },
        );
    }
    Phones(phones)
}
