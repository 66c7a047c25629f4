//! An error in a text file the owner wrote, pointing at the line to fix.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: usize,
    pub message: String,
}

impl LineError {
    pub fn new(line: usize, message: impl Into<String>) -> LineError {
        LineError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}

/// The lines of an owner-written list, numbered from 1, with `#` comments
/// and surrounding blanks removed and blank lines skipped. A leading byte
/// order mark (left by some Windows editors) is ignored.
pub fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().enumerate().filter_map(|(i, line)| {
        let content = line.split_once('#').map_or(line, |(before, _)| before).trim();
        (!content.is_empty()).then_some((i + 1, content))
    })
}
