//! `blade validate FILE [--json]`: every diagnostic of a service description.
//!
//! Exit status: 0 no error (warnings and notes allowed), 1 at least one error, 2 the file
//! cannot be read or is not JSON.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
};

use eas_config::{Diagnostic, Severity};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The service description (service.json); `-` reads standard input.
    pub file: PathBuf,
    /// Print diagnostics as a JSON array of {"severity", "path", "message"}.
    #[arg(long)]
    pub json: bool,
}

/// A service description is a few KB; anything far larger is not one, and reading it whole
/// would be an unbounded allocation.
pub const MAX_SERVICE_BYTES: u64 = 16 << 20;

pub const EXIT_INVALID: u8 = 1;
pub const EXIT_UNREADABLE: u8 = 2;

/// Reads a service file as UTF-8 text, refusing huge files. `-` reads standard input. A UTF-8
/// byte-order mark (some Windows editors write one) is skipped.
pub fn read_service(path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_SERVICE_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        f.take(MAX_SERVICE_BYTES + 1).read_to_end(&mut bytes)
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    if bytes.len() as u64 > MAX_SERVICE_BYTES {
        return Err(format!(
            "{} is larger than {} MiB; it is not a service description",
            path.display(),
            MAX_SERVICE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))
}

/// Reads and validates a service file: the JSON value and its diagnostics, or the message of
/// why it could not be read or parsed (line and column for JSON errors).
pub fn check_file(path: &Path) -> Result<(serde_json::Value, Vec<Diagnostic>), String> {
    let text = read_service(path)?;
    let value = eas_config::parse_value(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let diagnostics = eas_config::validate(&value);
    Ok((value, diagnostics))
}

/// `2 errors, 1 warning, 1 note`, or `no problems`.
pub fn summary(diags: &[Diagnostic]) -> String {
    let count = |s| diags.iter().filter(|d| d.severity == s).count();
    let parts: Vec<String> = [
        (Severity::Error, "error"),
        (Severity::Warning, "warning"),
        (Severity::Note, "note"),
    ]
    .into_iter()
    .filter_map(|(s, w)| {
        let n = count(s);
        (n > 0).then(|| format!("{n} {w}{}", if n == 1 { "" } else { "s" }))
    })
    .collect();
    if parts.is_empty() {
        "no problems".to_string()
    } else {
        parts.join(", ")
    }
}

pub fn main(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let (_, diags) = match check_file(&args.file) {
        Ok(x) => x,
        Err(msg) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&[Diagnostic::error("", &msg)])?
                );
            }
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(EXIT_UNREADABLE));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diags)?);
    } else {
        for d in &diags {
            println!("{d}");
        }
    }
    let failed = diags.iter().any(Diagnostic::is_error);
    eprintln!(
        "{}: {}{}",
        args.file.display(),
        summary(&diags),
        if failed { "" } else { " (valid)" }
    );
    Ok(if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}
