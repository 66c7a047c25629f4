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
    /// An outside number: which registered line's account places the call.
    via: Option<Spanned<String>>,
    /// An outside number: "line" (the shop's number) or "caller" (the caller's).
    caller_id: Option<Spanned<String>>,
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
    Outside(OutsideNumber),
}

/// An outside number (the owner's mobile) and how denwa calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideNumber {
    /// Digits (and a leading +) only, as the provider is asked to dial them.
    pub number: String,
    /// The registered line whose account places the call; `None`: the line
    /// the call came in on if it registers with the provider, else the first
    /// line that does.
    pub via: Option<String>,
    pub caller_id: OutsideCallerId,
}

/// Whose number the outside phone's screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideCallerId {
    /// The shop's number (the `via` line): works with every provider.
    Line,
    /// The caller's number in From and P-Asserted-Identity, with the shop's
    /// number in Diversion; a withheld caller shows the shop's number.
    Caller,
}

impl std::fmt::Debug for PhoneReach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PhoneReach::Registers { .. } => f.write_str("Registers { password: <hidden> }"),
            PhoneReach::Fixed { uri } => write!(f, "Fixed({uri})"),
            PhoneReach::Outside(o) => write!(f, "Outside({}, via {:?}, caller id {:?})", o.number, o.via, o.caller_id),
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
        if s.number.is_none() {
            for (field, value) in [("via", &s.via), ("caller_id", &s.caller_id)] {
                if let Some(v) = value {
                    ck.error(
                        &v.span(),
                        format!("{key}.{field}"),
                        "only an outside phone (number = \"090…\") is called through the provider; remove it",
                    );
                }
            }
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
            let Some(caller_id) = outside_caller_id(ck, &key, s.caller_id.as_ref()) else {
                continue;
            };
            PhoneReach::Outside(OutsideNumber {
                number: n.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect(),
                via: s.via.as_ref().map(|v| v.get_ref().trim().to_string()),
                caller_id,
            })
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

fn outside_caller_id(ck: &mut Checker, key: &str, value: Option<&Spanned<String>>) -> Option<OutsideCallerId> {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "line")) => Some(OutsideCallerId::Line),
        Some((_, "caller")) => Some(OutsideCallerId::Caller),
        Some((v, other)) => {
            ck.error(
                &v.span(),
                format!("{key}.caller_id"),
                format!("{other:?}: use \"line\" (show the shop's number) or \"caller\" (show the caller's)"),
            );
            None
        }
    }
}

/// Outside phones are called with a registered line's account: `via` must
/// name one, and without it there must be at least one. `registering` is
/// the lines that register with the provider, in config order.
pub(super) fn check_outside_lines(
    ck: &mut Checker,
    sections: &BTreeMap<String, Spanned<PhoneSection>>,
    lines: &[String],
    registering: &[String],
) {
    for (name, section) in sections {
        let s = section.get_ref();
        if s.number.is_none() {
            continue;
        }
        let key = format!("phones.{name}");
        match &s.via {
            Some(via) if !registering.iter().any(|l| l == via.get_ref().trim()) => {
                let why = if lines.iter().any(|l| l == via.get_ref().trim()) {
                    format!(
                        "line {:?} does not register with the provider, so it cannot place calls; name one that does ({})",
                        via.get_ref(),
                        registering.join(", ")
                    )
                } else {
                    format!(
                        "{:?} is not a line in [numbers]; name one that registers with the provider ({})",
                        via.get_ref(),
                        registering.join(", ")
                    )
                };
                ck.error(&via.span(), format!("{key}.via"), why);
            }
            // A warning, not an error: the rest of such a shop works (a
            // ring step naming the phone goes straight on to its next step).
            None if registering.is_empty() => ck.warn(
                &section.span(),
                &key,
                "an outside number is called through the provider with a registered line's account, and no line registers: it is never rung; configure [provider] and register a number",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::*;

    /// A shop with a registered `delivery` line, a local-only `local` line,
    /// and the phone section `phone` (starting on line 20) rung by delivery.
    fn shop(phone: &str) -> String {
        // SAFETY: only these tests read this variable.
        unsafe { std::env::set_var("DENWA_TEST_PW_OUTSIDE", "hunter2") };
        format!(
            "[provider]\nregistrar = \"127.0.0.1:5070\"\n\
[numbers.delivery]\nnumber = \"0501110002\"\npassword_env = \"DENWA_TEST_PW_OUTSIDE\"\n[[numbers.delivery.rules]]\nring = {{ phones = [\"mobile\"] }}\nannounce = \"hello.wav\"\n\
[numbers.local]\nnumber = \"9\"\nregister = false\n[[numbers.local.rules]]\nannounce = \"hello.wav\"\n{phone}"
        )
    }

    #[test]
    fn an_outside_number_names_its_line_and_caller_id() {
        let c = check(&shop(
            "[phones.mobile]\nnumber = \"090-1234-5678\"\nvia = \"delivery\"\ncaller_id = \"caller\"\n",
        ))
        .unwrap();
        assert_eq!(
            c.settings.phones.get("mobile").unwrap().reach,
            PhoneReach::Outside(OutsideNumber {
                number: "09012345678".into(),
                via: Some("delivery".into()),
                caller_id: OutsideCallerId::Caller,
            })
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = check(&shop("[phones.mobile]\nnumber = \"09012345678\"\n")).unwrap();
        assert!(matches!(
            &c.settings.phones.get("mobile").unwrap().reach,
            PhoneReach::Outside(OutsideNumber {
                via: None,
                caller_id: OutsideCallerId::Line,
                ..
            })
        ));
    }

    #[test]
    fn a_wrong_line_or_caller_id_is_an_error_on_its_line() {
        let e = check(&shop(
            "[phones.mobile]\nnumber = \"09012345678\"\nvia = \"local\"\ncaller_id = \"courier\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("shop.toml:21: phones.mobile.via: line \"local\" does not register with the provider, so it cannot place calls; name one that does (delivery)"),
            "{e}"
        );
        assert!(
            e.contains("shop.toml:22: phones.mobile.caller_id: \"courier\": use \"line\""),
            "{e}"
        );
        let e = check(&shop(
            "[phones.mobile]\nnumber = \"09012345678\"\nvia = \"deliverry\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("shop.toml:21: phones.mobile.via: \"deliverry\" is not a line in [numbers]"),
            "{e}"
        );
        let e = check(&shop(
            "[phones.mobile]\nuri = \"sip:m@192.0.2.1\"\nvia = \"delivery\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("shop.toml:21: phones.mobile.via: only an outside phone"),
            "{e}"
        );
    }
}
