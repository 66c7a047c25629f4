//! `[shop]`: time zone, country code, holidays, and the closing-days and
//! calendar files (whose errors point at their own lines).

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::policy::calendar::ClosedDays;
use crate::policy::ics::Calendar;
use crate::policy::{Closures, HolidayRules, NumberPlan, Shop};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ShopSection {
    pub name: Option<String>,
    pub timezone: Option<Spanned<String>>,
    /// Callers' numbers in this country are compared in national form (default 81).
    country_code: Option<Spanned<String>>,
    /// Public holidays for `when = { holiday = … }`: "jp".
    holidays: Option<Spanned<String>>,
    /// A file of closing days, one date or range per line, for `closed = …`.
    pub closed_days: Option<Spanned<String>>,
    /// An .ics export whose events are closing times, for `closed = …`.
    pub calendar: Option<Spanned<String>>,
    /// The modes `denwa mode` may set; each must be tested by some rule.
    pub modes: Option<Spanned<Vec<String>>>,
}

pub(super) fn compile_shop(ck: &mut Checker, section: &ShopSection, base: &Path) -> Shop {
    let number_plan = match &section.country_code {
        None => NumberPlan::default(),
        Some(c) => NumberPlan::new(c.get_ref()).unwrap_or_else(|e| {
            ck.error(&c.span(), "shop.country_code", e);
            NumberPlan::default()
        }),
    };
    let holidays = section.holidays.as_ref().and_then(|h| {
        HolidayRules::parse(h.get_ref())
            .map_err(|e| ck.error(&h.span(), "shop.holidays", e))
            .ok()
    });
    let mut read = |value: &Spanned<String>, key: &str| {
        let path = base.join(value.get_ref());
        std::fs::read_to_string(&path)
            .map_err(|e| ck.error(&value.span(), key, format!("cannot read {}: {e}", path.display())))
            .ok()
            .map(|text| (path, text))
    };
    let closed_text = section.closed_days.as_ref().and_then(|v| read(v, "shop.closed_days"));
    let calendar_text = section.calendar.as_ref().and_then(|v| read(v, "shop.calendar"));
    let mut closures = Closures::default();
    if let (Some((path, text)), Some(v)) = (closed_text, &section.closed_days) {
        match ClosedDays::parse(&text) {
            Ok(days) => closures.days = days,
            Err(e) => {
                let at = ck.line_of(&v.span());
                ck.error_in(
                    &path,
                    e.line,
                    "shop.closed_days",
                    format!(
                        "{} (named at line {at}); write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD, then an optional note",
                        e.message
                    ),
                );
            }
        }
    }
    if let (Some((path, text)), Some(v)) = (calendar_text, &section.calendar) {
        match Calendar::parse(&text) {
            Ok(c) => closures.calendar = Some(c),
            Err(e) => {
                let at = ck.line_of(&v.span());
                ck.error_in(
                    &path,
                    e.line,
                    "shop.calendar",
                    format!(
                        "{} (named at line {at}); export the calendar again, or fix that line",
                        e.message
                    ),
                );
            }
        }
    }
    Shop {
        number_plan,
        holidays,
        closures: Arc::new(closures),
        modes: section.modes.as_ref().map(|m| m.get_ref().clone()).unwrap_or_default(),
    }
}
