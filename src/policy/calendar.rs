//! The owner's closing-days file: one date or range per line.
//!
//! ```text
//! # Year-end break
//! 2026-12-29..2027-01-03  New Year
//! 2027-02-10              stocktaking
//! ```
//!
//! A range includes both ends. Anything after the date is a note, shown in
//! the reason for a decision; `#` starts a comment.

use jiff::civil::Date;

use super::line_error::{LineError, meaningful_lines};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSpan {
    pub first: Date,
    /// Inclusive.
    pub last: Date,
    pub note: Option<String>,
    /// Where the owner wrote it, for explanations.
    pub line: usize,
}

/// The days the shop is closed, as listed in the owner's file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosedDays {
    spans: Vec<ClosedSpan>,
}

/// A strict `YYYY-MM-DD`: the owner's file should mean one thing only.
pub fn parse_ymd(text: &str) -> Result<Date, String> {
    let bad = || format!("{text:?} is not a date (use YYYY-MM-DD)");
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<i16>().map_err(|_| bad());
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    Date::new(year, month as i8, day as i8).map_err(|_| bad())
}

impl ClosedDays {
    pub fn parse(text: &str) -> Result<ClosedDays, LineError> {
        let mut spans = Vec::new();
        for (line, content) in meaningful_lines(text) {
            let (first, last, note) = split_line(content);
            let first = parse_ymd(first).map_err(|m| LineError::new(line, m))?;
            let last = parse_ymd(last).map_err(|m| LineError::new(line, m))?;
            if last < first {
                return Err(LineError::new(
                    line,
                    format!("the range {first}..{last} ends before it starts"),
                ));
            }
            let note = (!note.is_empty()).then(|| note.to_string());
            spans.push(ClosedSpan {
                first,
                last,
                note,
                line,
            });
        }
        Ok(ClosedDays { spans })
    }

    pub fn contains(&self, day: Date) -> bool {
        self.find(day).is_some()
    }

    /// The first listed span that covers `day`, for its note and line.
    pub fn find(&self, day: Date) -> Option<&ClosedSpan> {
        self.spans.iter().find(|s| s.first <= day && day <= s.last)
    }

    pub fn spans(&self) -> &[ClosedSpan] {
        &self.spans
    }
}

/// The first word of `text` and the trimmed rest.
fn first_token(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

/// `first[..last] [note]`, allowing spaces around the dots.
fn split_line(content: &str) -> (&str, &str, &str) {
    match content.split_once("..") {
        Some((first, rest)) if !first.trim().contains(char::is_whitespace) => {
            let (last, note) = first_token(rest);
            (first.trim(), last, note)
        }
        _ => {
            let (day, note) = first_token(content);
            (day, day, note)
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    const FILE: &str = "\
# Closing days for 2026-2027
2026-12-29..2027-01-03  New Year break
2027-02-10 stocktaking

  2027-03-01   # no note, just a comment
2027-05-01 .. 2027-05-05 Golden Week
2027-08-13..2027-08-16
";

    #[test]
    fn days_and_ranges_with_notes() {
        let closed = ClosedDays::parse(FILE).unwrap();
        type LineAndNote = Option<(usize, Option<&'static str>)>;
        let cases: &[(Date, LineAndNote)] = &[
            (date(2026, 12, 28), None),
            (date(2026, 12, 29), Some((2, Some("New Year break")))),
            (date(2027, 1, 1), Some((2, Some("New Year break")))),
            (date(2027, 1, 3), Some((2, Some("New Year break")))),
            (date(2027, 1, 4), None),
            (date(2027, 2, 10), Some((3, Some("stocktaking")))),
            (date(2027, 2, 11), None),
            (date(2027, 3, 1), Some((5, None))),
            (date(2027, 5, 3), Some((6, Some("Golden Week")))),
            (date(2027, 5, 6), None),
            (date(2027, 8, 16), Some((7, None))),
            (date(2027, 8, 17), None),
        ];
        for &(day, want) in cases {
            let got = closed.find(day).map(|s| (s.line, s.note.as_deref()));
            assert_eq!(got, want, "{day}");
            assert_eq!(closed.contains(day), want.is_some(), "{day}");
        }
        assert_eq!(closed.spans().len(), 5);
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            (
                "2026-12-29\n\n2026-13-01\n",
                "line 3: \"2026-13-01\" is not a date (use YYYY-MM-DD)",
            ),
            ("2026/12/29\n", "line 1: \"2026/12/29\" is not a date (use YYYY-MM-DD)"),
            ("2026-2-9\n", "line 1: \"2026-2-9\" is not a date (use YYYY-MM-DD)"),
            ("2027-02-29\n", "line 1: \"2027-02-29\" is not a date (use YYYY-MM-DD)"),
            (
                "# x\n2027-01-03..2026-12-29\n",
                "line 2: the range 2027-01-03..2026-12-29 ends before it starts",
            ),
            ("2026-12-29..\n", "line 1: \"\" is not a date (use YYYY-MM-DD)"),
            (
                "2026-12-29..2027-1-3\n",
                "line 1: \"2027-1-3\" is not a date (use YYYY-MM-DD)",
            ),
            (
                "closed on 2026-12-29\n",
                "line 1: \"closed\" is not a date (use YYYY-MM-DD)",
            ),
        ];
        for &(text, want) in cases {
            assert_eq!(ClosedDays::parse(text).unwrap_err().to_string(), want, "{text:?}");
        }
    }

    #[test]
    fn empty_and_comment_only_files_and_bom() {
        assert!(ClosedDays::parse("").unwrap().spans().is_empty());
        assert!(ClosedDays::parse("# nothing yet\n\n").unwrap().spans().is_empty());
        let closed = ClosedDays::parse("\u{feff}2026-12-31\r\n2027-01-01\r\n").unwrap();
        assert!(closed.contains(date(2026, 12, 31)) && closed.contains(date(2027, 1, 1)));
    }

    #[test]
    fn leap_day_is_a_date() {
        assert_eq!(parse_ymd("2028-02-29"), Ok(date(2028, 2, 29)));
        assert!(parse_ymd("2026-02-29").is_err());
        assert!(parse_ymd("20261229").is_err());
        assert!(parse_ymd("2026-12-29T00:00").is_err());
    }
}
