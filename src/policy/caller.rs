//! Who is calling: the caller's number in one comparable form, or the fact
//! that there is none, and the owner's patterns to match it.
//!
//! Numbers in the home country become their national form (`09012345678`,
//! however they were written: `+81 90-1234-5678`, `0081…`, `(090) 1234 5678`);
//! other countries' numbers become `+<digits>`. The engine passes in the
//! strings it found in the request; nothing here knows SIP.

use std::fmt;

use super::line_error::{LineError, meaningful_lines};

/// How numbers are written where the shop is. The national form assumes a
/// trunk prefix of 0 (Japan, most of Europe and Asia).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// Without the plus: "81" for Japan.
    country_code: String,
}

impl Default for NumberPlan {
    fn default() -> Self {
        NumberPlan {
            country_code: "81".into(),
        }
    }
}

impl NumberPlan {
    pub fn new(country_code: &str) -> Result<NumberPlan, String> {
        let code = country_code.trim().trim_start_matches('+');
        if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) || code.starts_with('0') {
            return Err(format!(
                "{country_code:?} is not a country calling code (e.g. 81 for Japan)"
            ));
        }
        Ok(NumberPlan {
            country_code: code.into(),
        })
    }

    pub fn country_code(&self) -> &str {
        &self.country_code
    }

    /// The comparable form of a dialable number, or None if `text` is not
    /// one (letters, or nothing left once separators are removed).
    pub fn normalise(&self, text: &str) -> Option<String> {
        let (plus, digits) = digits_of(text)?;
        if digits.is_empty() {
            return None;
        }
        let international = if plus {
            Some(digits.as_str())
        } else if let Some(rest) = digits.strip_prefix("010").filter(|_| self.country_code == "81") {
            // Japan's own international prefix.
            Some(rest)
        } else if let Some(rest) = digits.strip_prefix("00") {
            Some(rest)
        } else if digits.starts_with(&self.country_code) && digits.len() >= self.country_code.len() + 9 {
            // E.164 without the plus, as some providers send it.
            Some(digits.as_str())
        } else {
            None
        };
        Some(match international {
            Some(e164) => match e164.strip_prefix(self.country_code.as_str()) {
                // "+81 (0)3 …" writes the trunk zero too.
                Some(national) if national.starts_with('0') => national.to_string(),
                Some(national) => format!("0{national}"),
                None => format!("+{e164}"),
            },
            None => digits,
        })
    }
}

/// Digits of a number written with the usual separators, and whether it
/// started with a plus. Full-width digits (as typed in Japanese input) count.
fn digits_of(text: &str) -> Option<(bool, String)> {
    let text = text.trim();
    let mut plus = false;
    let mut digits = String::new();
    for (i, c) in text.chars().enumerate() {
        let c = match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '＋' => '+',
            other => other,
        };
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => plus = true,
            ' ' | '-' | '.' | '(' | ')' | '/' | '－' | '\u{3000}' => {}
            _ => return None,
        }
    }
    Some((plus, digits))
}

/// The user part of a SIP or tel URI, or the text itself if it is no URI:
/// `sip:0901234@host;user=phone` and `tel:+81-90-1234;npdi` give the number.
fn user_part(text: &str) -> &str {
    let text = text.trim().trim_start_matches('<').trim_end_matches('>');
    let lower = text.get(..5).unwrap_or("").to_ascii_lowercase();
    let rest = ["sips:", "sip:", "tel:"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map_or(text, |scheme| &text[scheme.len()..]);
    let end = rest.find(['@', ';', '?', '>']).unwrap_or(rest.len());
    &rest[..end]
}

/// The caller as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NormalisedCaller {
    /// National form for the home country, `+<digits>` for others, the bare
    /// digits for short codes.
    Number(String),
    /// The caller chose to hide the number (非通知): `anonymous`, or a
    /// Privacy header asking for it (RFC 3323).
    Withheld,
    /// The network has no number to give (表示圏外, payphones, a name only).
    Unavailable,
}

impl NormalisedCaller {
    /// No number to go by, for whatever reason.
    pub fn is_anonymous(&self) -> bool {
        !matches!(self, NormalisedCaller::Number(_))
    }

    pub fn number(&self) -> Option<&str> {
        match self {
            NormalisedCaller::Number(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for NormalisedCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NormalisedCaller::Number(n) => f.write_str(n),
            NormalisedCaller::Withheld => f.write_str("withheld number"),
            NormalisedCaller::Unavailable => f.write_str("no number available"),
        }
    }
}

/// What the request said about the caller, as strings from its headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerHeaders<'a> {
    /// The From URI or just its user part.
    pub from: &'a str,
    /// The P-Asserted-Identity URI (or its user part), set by the provider.
    pub asserted: Option<&'a str>,
    /// The Privacy header's value, e.g. `id` or `id;critical`.
    pub privacy: Option<&'a str>,
}

const WITHHELD_NAMES: &[&str] = &["anonymous", "restricted", "private", "withheld"];

impl NumberPlan {
    pub fn caller(&self, headers: &CallerHeaders) -> NormalisedCaller {
        let hides = headers.privacy.is_some_and(|value| {
            value
                .split([';', ','])
                .any(|p| matches!(p.trim().to_ascii_lowercase().as_str(), "id" | "header" | "user"))
        });
        if hides {
            return NormalisedCaller::Withheld;
        }
        let asserted = headers.asserted.and_then(|uri| self.normalise(user_part(uri)));
        if let Some(number) = asserted {
            return NormalisedCaller::Number(number);
        }
        let from = user_part(headers.from);
        if let Some(number) = self.normalise(from) {
            return NormalisedCaller::Number(number);
        }
        if WITHHELD_NAMES.contains(&from.to_ascii_lowercase().as_str()) {
            NormalisedCaller::Withheld
        } else {
            NormalisedCaller::Unavailable
        }
    }
}

/// One thing the owner can say about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPattern {
    /// This number (already normalised).
    Exact(String),
    /// Numbers starting so (normalised), written `090*`; `*` alone is any number.
    Prefix(String),
    /// Withheld or unavailable: `anonymous`.
    Anonymous,
    /// Only withheld: `withheld`.
    Withheld,
    /// Only unavailable: `unavailable`.
    Unavailable,
}

impl CallerPattern {
    pub fn parse(text: &str, plan: &NumberPlan) -> Result<CallerPattern, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "anonymous" => return Ok(CallerPattern::Anonymous),
            "withheld" => return Ok(CallerPattern::Withheld),
            "unavailable" => return Ok(CallerPattern::Unavailable),
            "*" => return Ok(CallerPattern::Prefix(String::new())),
            _ => {}
        }
        let bad = || {
            format!(
                "{text:?} is not a phone number or prefix (write digits like 090-1234-5678 or +1 415 555 0100, \
                 090* for a prefix, or anonymous)"
            )
        };
        let (number, prefix) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        let normalised = plan.normalise(number).ok_or_else(bad)?;
        Ok(if prefix {
            CallerPattern::Prefix(normalised)
        } else {
            CallerPattern::Exact(normalised)
        })
    }

    pub fn matches(&self, caller: &NormalisedCaller) -> bool {
        match (self, caller) {
            (CallerPattern::Exact(want), NormalisedCaller::Number(n)) => want == n,
            (CallerPattern::Prefix(want), NormalisedCaller::Number(n)) => n.starts_with(want.as_str()),
            (CallerPattern::Anonymous, c) => c.is_anonymous(),
            (CallerPattern::Withheld, c) => *c == NormalisedCaller::Withheld,
            (CallerPattern::Unavailable, c) => *c == NormalisedCaller::Unavailable,
            _ => false,
        }
    }
}

impl fmt::Display for CallerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallerPattern::Exact(n) => f.write_str(n),
            CallerPattern::Prefix(p) => write!(f, "{p}*"),
            CallerPattern::Anonymous => f.write_str("anonymous"),
            CallerPattern::Withheld => f.write_str("withheld"),
            CallerPattern::Unavailable => f.write_str("unavailable"),
        }
    }
}

/// A list of caller patterns from the owner's file, one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerList {
    patterns: Vec<(CallerPattern, usize)>,
}

impl CallerList {
    pub fn parse(text: &str, plan: &NumberPlan) -> Result<CallerList, LineError> {
        let patterns = meaningful_lines(text)
            .map(|(line, content)| {
                CallerPattern::parse(content, plan)
                    .map(|p| (p, line))
                    .map_err(|m| LineError::new(line, m))
            })
            .collect::<Result<_, _>>()?;
        Ok(CallerList { patterns })
    }

    /// The first pattern that matches, with its line, for explanations.
    pub fn find(&self, caller: &NormalisedCaller) -> Option<(&CallerPattern, usize)> {
        self.patterns
            .iter()
            .find(|(p, _)| p.matches(caller))
            .map(|(p, line)| (p, *line))
    }

    pub fn matches(&self, caller: &NormalisedCaller) -> bool {
        self.find(caller).is_some()
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jp() -> NumberPlan {
        NumberPlan::default()
    }

    #[test]
    fn spellings_of_one_mobile_number_compare_equal() {
        for text in [
            "+81 90-1234-5678",
            "+819012345678",
            "0081-90-1234-5678",
            "(090) 1234 5678",
            "09012345678",
            "090.1234.5678",
            "819012345678",
            "+81 (0)90 1234 5678",
            "０９０－１２３４－５６７８",
            "010-81-90-1234-5678",
        ] {
            assert_eq!(jp().normalise(text).as_deref(), Some("09012345678"), "{text}");
        }
    }

    #[test]
    fn other_numbers() {
        let cases: &[(&str, Option<&str>)] = &[
            ("+1 415 555 0100", Some("+14155550100")),
            ("0014155550100", Some("+14155550100")),
            ("010 44 20 7946 0958", Some("+442079460958")),
            ("03-1234-5678", Some("0312345678")),
            ("+81 3 1234 5678", Some("0312345678")),
            ("0120-123-456", Some("0120123456")),
            ("117", Some("117")),
            ("", None),
            ("---", None),
            ("anonymous", None),
            ("090-1234-567x", None),
            ("09+012", None),
        ];
        for &(text, want) in cases {
            assert_eq!(jp().normalise(text).as_deref(), want, "{text}");
        }
        // With another home country, Japanese numbers stay international.
        let us = NumberPlan::new("+1").unwrap();
        assert_eq!(us.normalise("+81 90-1234-5678").as_deref(), Some("+819012345678"));
        assert_eq!(us.normalise("+1 415 555 0100").as_deref(), Some("04155550100"));
        assert_eq!(us.normalise("0104155550100").as_deref(), Some("0104155550100"));
        assert!(NumberPlan::new("0").is_err() && NumberPlan::new("12345").is_err() && NumberPlan::new("JP").is_err());
    }

    fn caller(from: &str, asserted: Option<&str>, privacy: Option<&str>) -> NormalisedCaller {
        jp().caller(&CallerHeaders {
            from,
            asserted,
            privacy,
        })
    }

    #[test]
    fn callers_from_headers() {
        use NormalisedCaller::*;
        let number = |n: &str| Number(n.to_string());
        type Headers = (&'static str, Option<&'static str>, Option<&'static str>);
        let cases: &[(Headers, NormalisedCaller)] = &[
            (("09012345678", None, None), number("09012345678")),
            (
                ("sip:+819012345678@provider.example;user=phone", None, None),
                number("09012345678"),
            ),
            (("tel:+81-90-1234-5678;npdi", None, None), number("09012345678")),
            // The provider's asserted identity wins over what From claims.
            (
                ("0312345678", Some("<sip:+819012345678@ims.example>"), None),
                number("09012345678"),
            ),
            (("anonymous", Some("tel:+819012345678"), None), number("09012345678")),
            // ... unless it is no number.
            (
                ("0312345678", Some("sip:gateway@ims.example"), None),
                number("0312345678"),
            ),
            (("anonymous", None, None), Withheld),
            (("Anonymous", None, None), Withheld),
            (("sip:anonymous@anonymous.invalid", None, None), Withheld),
            (("restricted", None, None), Withheld),
            (("09012345678", Some("tel:+819012345678"), Some("id")), Withheld),
            (("09012345678", None, Some("header;id;critical")), Withheld),
            (("09012345678", None, Some("user")), Withheld),
            (("09012345678", None, Some("none")), number("09012345678")),
            (("unknown", None, None), Unavailable),
            (("unavailable", None, None), Unavailable),
            (("", None, None), Unavailable),
            (("Coin line/payphone", None, None), Unavailable),
            (("sip:reception@pbx.example", None, None), Unavailable),
        ];
        for ((from, asserted, privacy), want) in cases {
            assert_eq!(
                &caller(from, *asserted, *privacy),
                want,
                "{from} {asserted:?} {privacy:?}"
            );
        }
        assert!(Withheld.is_anonymous() && Unavailable.is_anonymous() && !number("1").is_anonymous());
    }

    #[test]
    fn patterns_match() {
        let plan = jp();
        let mobile = NormalisedCaller::Number("09012345678".into());
        let landline = NormalisedCaller::Number("0312345678".into());
        let abroad = NormalisedCaller::Number("+14155550100".into());
        let w = NormalisedCaller::Withheld;
        let u = NormalisedCaller::Unavailable;
        let cases: &[(&str, [bool; 5])] = &[
            ("+81 90-1234-5678", [true, false, false, false, false]),
            ("090*", [true, false, false, false, false]),
            ("+8190*", [true, false, false, false, false]),
            ("03*", [false, true, false, false, false]),
            ("+81*", [true, true, false, false, false]),
            ("+1*", [false, false, true, false, false]),
            ("*", [true, true, true, false, false]),
            ("anonymous", [false, false, false, true, true]),
            ("Withheld", [false, false, false, true, false]),
            ("unavailable", [false, false, false, false, true]),
        ];
        for (text, want) in cases {
            let p = CallerPattern::parse(text, &plan).unwrap();
            let got = [&mobile, &landline, &abroad, &w, &u].map(|c| p.matches(c));
            assert_eq!(&got, want, "{text}");
        }
        for bad in ["09*0", "abc", "", "0x90", "**"] {
            assert!(CallerPattern::parse(bad, &plan).is_err(), "{bad}");
        }
        assert_eq!(CallerPattern::parse("+8190*", &plan).unwrap().to_string(), "090*");
    }

    #[test]
    fn lists_from_a_file() {
        let plan = jp();
        let text = include_str!("../../tests/data/sales_callers.txt");
        let list = CallerList::parse(text, &plan).unwrap();
        assert_eq!(list.len(), 4);
        let find = |n: &str| {
            list.find(&plan.caller(&CallerHeaders {
                from: n,
                ..Default::default()
            }))
        };
        assert_eq!(find("+81 90 1234 5678").map(|(_, line)| line), Some(3));
        assert_eq!(
            find("0455550123").map(|(p, line)| (p.to_string(), line)),
            Some(("045555*".into(), 5))
        );
        assert_eq!(find("anonymous").map(|(_, line)| line), Some(7));
        assert_eq!(find("0312345678"), None);
        assert!(list.matches(&NormalisedCaller::Number("+14155550100".into())));

        let err = CallerList::parse("# sales\n090-1234-5678\n090-O000-1111\n", &plan).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(
            err.to_string()
                .starts_with("line 3: \"090-O000-1111\" is not a phone number"),
            "{err}"
        );
        assert!(CallerList::parse("# none yet\n", &plan).unwrap().is_empty());
    }
}
