//! `model_path`: where the model is, and how a local run finds it.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::diag::Problem;

/// URL schemes EAS takes for model_path. `file` is read locally; the others are recognized but
/// fetching them is not supported in this build.
pub const KNOWN_SCHEMES: &[&str] = &["oss", "http", "https", "file"];

/// A `model_path`, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPath {
    /// A local folder or archive, as written; relative paths are relative to the folder of
    /// service.json.
    Local(PathBuf),
    /// `file:///abs/path`.
    File(PathBuf),
    /// `oss://bucket/path/`, `http(s)://...` or another scheme.
    Remote { scheme: String, url: String },
}

impl ModelPath {
    pub fn parse(s: &str) -> Result<ModelPath, Problem> {
        let t = s.trim();
        if t.is_empty() {
            return Err(Problem::new("model_path is empty")
                .expected("oss://bucket/path/, a local folder, or file:///abs/path"));
        }
        let Some((scheme, rest)) = t.split_once("://") else {
            return Ok(ModelPath::Local(PathBuf::from(t)));
        };
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b));
        if !scheme_ok {
            return Err(Problem::new("model_path is not a valid URL")
                .found(format!("{s:?}"))
                .expected("scheme://..., e.g. oss://bucket/path/"));
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(Problem::new("a file:// model_path needs an absolute path")
                    .found(format!("{s:?}"))
                    .expected("file:///abs/path, or a plain relative path"));
            }
            return Ok(ModelPath::File(PathBuf::from(path)));
        }
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            let what = if scheme == "oss" { "bucket" } else { "host" };
            return Err(Problem::new(format!("model_path has no {what}"))
                .found(format!("{s:?}"))
                .expected(format!("{scheme}://{what}/path/")));
        }
        Ok(ModelPath::Remote {
            scheme,
            url: t.to_string(),
        })
    }

    /// The local path of the model: relative paths are joined to `service_dir` (the folder of
    /// service.json). Remote paths are an error of their own kind: recognized, but not fetched
    /// in this build.
    pub fn resolve(&self, service_dir: &Path) -> Result<PathBuf, Error> {
        // `components()` drops `.` components, so "." is the service folder itself.
        let tidy = |p: PathBuf| -> PathBuf { p.components().collect() };
        match self {
            ModelPath::Local(p) => Ok(tidy(service_dir.join(p))),
            ModelPath::File(p) => Ok(tidy(p.clone())),
            ModelPath::Remote { scheme, url } => Err(Error::RemoteModelPath {
                scheme: scheme.clone(),
                url: url.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_model_paths() {
        assert_eq!(ModelPath::parse(".").unwrap(), ModelPath::Local(".".into()));
        assert_eq!(
            ModelPath::parse("file:///m/x").unwrap(),
            ModelPath::File("/m/x".into())
        );
        assert_eq!(
            ModelPath::parse("file://localhost/m").unwrap(),
            ModelPath::File("/m".into())
        );
        assert!(
            matches!(ModelPath::parse("oss://b/p/").unwrap(), ModelPath::Remote { scheme, .. } if scheme == "oss")
        );
        assert!(ModelPath::parse("oss:///p").is_err());
        assert!(ModelPath::parse("file://rel/x").is_err());
        assert!(ModelPath::parse("  ").is_err());
        assert!(ModelPath::parse("1bad://x").is_err());
    }

    #[test]
    fn resolves_relative_to_service_dir() {
        let d = Path::new("/srv/example");
        assert_eq!(
            ModelPath::parse(".").unwrap().resolve(d).unwrap(),
            Path::new("/srv/example/.")
        );
        assert_eq!(
            ModelPath::parse("/abs").unwrap().resolve(d).unwrap(),
            Path::new("/abs")
        );
        let e = ModelPath::parse("oss://b/p/")
            .unwrap()
            .resolve(d)
            .unwrap_err();
        assert!(e.to_string().contains("not supported in this build"), "{e}");
    }
}
