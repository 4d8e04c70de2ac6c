//! Diagnostics: what validation reports, each pointing at the offending value with a JSON
//! pointer (RFC 6901).

use std::fmt;

use serde::Serialize;

/// How bad a finding is. Ordered: `Note < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Information about what will happen (e.g. o2 without calibration data means online INT8).
    Note,
    /// Probably a mistake, but the description still works (e.g. a key that is ignored).
    Warning,
    /// The description cannot be used as it is.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem found while parsing one value (a shape, a range, the plugin command), before it
/// is tied to a place in the document. [`Diagnostic::at`] turns it into a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub found: Option<String>,
    pub expected: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            found: None,
            expected: None,
        }
    }
    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Raw<'a>(&'a Problem);
        impl fmt::Display for Raw<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_full(f, &self.0.message, &self.0.found, &self.0.expected)
            }
        }
        f.write_str(&sanitize(&Raw(self).to_string()))
    }
}

/// One finding of validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// JSON pointer of the offending value, or of the missing key; `""` is the whole document.
    pub path: String,
    /// What is wrong, in one sentence without the found/expected parts.
    pub message: String,
    /// The value that was found, rendered as JSON (or a short description of it).
    pub found: Option<String>,
    /// What is expected instead, or how to fix it (may include a did-you-mean).
    pub expected: Option<String>,
}

impl Diagnostic {
    pub fn new(severity: Severity, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            path: path.into(),
            message: message.into(),
            found: None,
            expected: None,
        }
    }
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, path, message)
    }
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, path, message)
    }
    pub fn note(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Note, path, message)
    }
    /// A diagnostic at `path` from a value-level problem.
    pub fn at(severity: Severity, path: impl Into<String>, problem: Problem) -> Self {
        Diagnostic {
            severity,
            path: path.into(),
            message: problem.message,
            found: problem.found,
            expected: problem.expected,
        }
    }
    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    /// The message with its found/expected parts, as printed by `blade validate`.
    pub fn full_message(&self) -> String {
        struct Full<'a>(&'a Diagnostic);
        impl fmt::Display for Full<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_full(f, &self.0.message, &self.0.found, &self.0.expected)
            }
        }
        Full(self).to_string()
    }
}

fn write_full(
    f: &mut fmt::Formatter<'_>,
    message: &str,
    found: &Option<String>,
    expected: &Option<String>,
) -> fmt::Result {
    f.write_str(message)?;
    match (found, expected) {
        (Some(fd), Some(ex)) => write!(f, " (found {fd}, expected {ex})"),
        (Some(fd), None) => write!(f, " (found {fd})"),
        (None, Some(ex)) => write!(f, " (expected {ex})"),
        (None, None) => Ok(()),
    }
}

/// `error: /plugins/0/image: unknown plugin image tag (found "x", expected ...)`. The whole
/// document (pointer `""`) is shown as `(document)`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        // Keys and values come from the user's file: control characters (terminal escapes)
        // are shown escaped, never sent to the terminal.
        write!(f, "{}: {}: ", self.severity, sanitize(path))?;
        write!(f, "{}", sanitize(&self.full_message()))
    }
}

/// `s` with control characters escaped (`\u{1b}`), for printing user-supplied text.
pub fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `{"severity", "path", "message"}` where message is [`Diagnostic::full_message`]; `found` and
/// `expected` are added when known so tools need not parse the message.
impl Serialize for Diagnostic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let n = 3 + self.found.is_some() as usize + self.expected.is_some() as usize;
        let mut m = s.serialize_map(Some(n))?;
        m.serialize_entry("severity", &self.severity)?;
        m.serialize_entry("path", &self.path)?;
        m.serialize_entry("message", &self.full_message())?;
        if let Some(fd) = &self.found {
            m.serialize_entry("found", fd)?;
        }
        if let Some(ex) = &self.expected {
            m.serialize_entry("expected", ex)?;
        }
        m.end()
    }
}

/// Appends one reference token to a JSON pointer, escaping `~` as `~0` and `/` as `~1`.
pub fn pointer_push(base: &str, token: &str) -> String {
    let mut s = String::with_capacity(base.len() + token.len() + 1);
    s.push_str(base);
    s.push('/');
    for c in token.chars() {
        match c {
            '~' => s.push_str("~0"),
            '/' => s.push_str("~1"),
            c => s.push(c),
        }
    }
    s
}

/// The closest candidate to `found`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(found: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = found.to_ascii_lowercase();
    let mut best: Option<(&'a str, usize)> = None;
    for &c in candidates {
        let d = strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase());
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    let (c, d) = best?;
    let limit = (c.chars().count().max(found.chars().count()) / 3).max(1);
    (d <= limit && c != found).then_some(c)
}

/// `one of "a", "b", "c"` plus `; did you mean "b"?` when a candidate is close.
pub fn one_of(found: Option<&str>, candidates: &[&str]) -> String {
    let list = candidates
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = if candidates.len() == 1 {
        list
    } else {
        format!("one of {list}")
    };
    if let Some(dym) = found.and_then(|f| did_you_mean(f, candidates)) {
        s.push_str(&format!("; did you mean {dym:?}?"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        assert_eq!(pointer_push("/a", "x/y~z"), "/a/x~1y~0z");
        assert_eq!(pointer_push("", "frozen.pb"), "/frozen.pb");
    }

    #[test]
    fn display_escapes_control_characters() {
        let d = Diagnostic::error(pointer_push("", "a\u{1b}[31m"), "bad\n").found("\u{7}");
        let shown = d.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "error: /a\\u{1b}[31m: bad\\n (found \\u{7})");
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(
            did_you_mean("procesor", &["processor", "name"]),
            Some("processor")
        );
        assert_eq!(did_you_mean("O1", &["o1", "o2"]), Some("o1"));
        assert_eq!(did_you_mean("banana", &["processor", "name"]), None);
    }

    #[test]
    fn display_has_path_found_expected() {
        let d = Diagnostic::error("/a/b", "bad").found("1").expected("2");
        assert_eq!(d.to_string(), "error: /a/b: bad (found 1, expected 2)");
        let d = Diagnostic::warning("", "w");
        assert_eq!(d.to_string(), "warning: (document): w");
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"severity": "warning", "path": "", "message": "w"})
        );
    }
}
