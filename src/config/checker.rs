//! Where a config's problems are collected, each with its file, line and
//! key, and the small value parsers every section uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::Secrets;

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
        // Line 0: the problem has no place in the file (it could not be
        // read, or a default is at fault); "file:0:" would send an editor astray.
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}: ", self.file.display(), self.line)?;
        }
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

pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) source: &'a str,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<ConfigError>,
    pub(super) secrets: Secrets,
}

impl Checker<'_> {
    /// A password from the environment variable `var` names (`what` says
    /// whose, for the error). Tools that need no secrets get an empty one.
    pub(super) fn secret_from_env(&mut self, var: &Spanned<String>, key: &str, what: &str) -> Option<String> {
        if self.secrets == Secrets::Optional {
            return Some(String::new());
        }
        std::env::var(var.get_ref())
            .map_err(|_| {
                self.error(
                    &var.span(),
                    format!("{key}.password_env"),
                    format!(
                        "environment variable {} is not set (it should hold {what})",
                        var.get_ref()
                    ),
                )
            })
            .ok()
    }

    /// A password from a file (relative to the config), without its line end.
    pub(super) fn secret_from_file(&mut self, base: &Path, file: &Spanned<String>, key: &str) -> Option<String> {
        let path = base.join(file.get_ref());
        std::fs::read_to_string(&path)
            .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| {
                self.error(
                    &file.span(),
                    format!("{key}.password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
            .ok()
    }

    /// A problem in another file the config names (a calendar, a list).
    pub(super) fn error_in(&mut self, file: &Path, line: usize, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: file.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, span: &std::ops::Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let before = self.errors.len();
        self.error(span, key, message);
        let w = self.errors.split_off(before);
        self.warnings.extend(w);
    }

    pub(super) fn line_of(&self, span: &std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.source.len());
        self.source[..end].matches('\n').count() + 1
    }

    pub(super) fn error(&mut self, span: &std::ops::Range<usize>, key: impl Into<String>, message: impl Into<String>) {
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
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(super) fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
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

/// Why a config file could not be read, and what to do about it.
fn unreadable(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "cannot read it: no such file (give another with --config)".into(),
        ErrorKind::PermissionDenied => {
            "cannot read it: permission denied (make it readable by the user denwa runs as)".into()
        }
        ErrorKind::InvalidData => "cannot read it: it is not UTF-8 text (save it as UTF-8)".into(),
        ErrorKind::IsADirectory => "cannot read it: it is a directory, not a config file".into(),
        _ => format!("cannot read it: {e}"),
    }
}

pub(super) fn read_config(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| unreadable(&e))
}
