//! The one way to build a Spark Connect URL: `spark.connect_url` plus the client parameters
//! and, when the token file exists, `;token=<token>`.
//!
//! spark-connect-rs turns `token=...` into the gRPC header `authorization: Bearer ...` (over
//! plaintext too: the crate only needs its `tls` feature for `use_ssl=true`). The server's
//! interceptor (cluster/java/) refuses every call without the right token. The token never
//! appears in the [`Display`]/[`Debug`] output of a [`ConnectUrl`], so the URL can go into
//! errors and logs.

use std::fmt;
use std::path::Path;

use crate::Config;

/// Why a Spark Connect URL could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectUrlError {
    #[error("spark.connect_url `{0}` must start with sc://")]
    Scheme(String),
    #[error("cannot read the Spark Connect token from {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the Spark Connect token in {path} {problem} (`pipeline cluster up` writes a valid one when the file is missing)")]
    Invalid { path: String, problem: &'static str },
}

/// A Spark Connect URL whose printed form hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectUrl {
    url: String,
    has_token: bool,
}

impl ConnectUrl {
    /// The full URL, token included: pass it to `SparkSessionBuilder::remote`, never print it.
    pub fn secret(&self) -> &str {
        &self.url
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.has_token
    }
}

impl fmt::Display for ConnectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<&str> = self
            .url
            .split(';')
            .map(|part| if part.starts_with("token=") { "token=<redacted>" } else { part })
            .collect();
        f.write_str(&shown.join(";"))
    }
}

impl fmt::Debug for ConnectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectUrl({self})")
    }
}

/// Characters a token may use: they go unchanged through the URL parser and into an HTTP
/// header (spark-connect-rs would panic on a header value it cannot encode).
fn token_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
}

/// The token in `path`: `None` when the file does not exist (a cluster without
/// authentication), an error when it exists but cannot be read or is not a valid token.
pub fn read_token(path: &Path) -> Result<Option<String>, ConnectUrlError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConnectUrlError::Read { path: path.display().to_string(), source }),
    };
    check_token(text.trim(), &path.display().to_string()).map(Some)
}

fn check_token(token: &str, origin: &str) -> Result<String, ConnectUrlError> {
    let invalid = |problem| ConnectUrlError::Invalid { path: origin.to_string(), problem };
    if token.is_empty() {
        return Err(invalid("is empty"));
    }
    if !token.chars().all(token_char_ok) {
        return Err(invalid("may only hold ASCII letters, digits and - _ . ~"));
    }
    Ok(token.to_string())
}

/// The token clients send: `spark.connect_token` if set, else the token file's content, else
/// none.
pub fn client_token(config: &Config) -> Result<Option<String>, ConnectUrlError> {
    match &config.spark.connect_token {
        Some(t) => check_token(t.trim(), "spark.connect_token (PIPELINE__SPARK__CONNECT_TOKEN)").map(Some),
        None => read_token(&config.connect_token_file()),
    }
}

/// `sc://host:port/;user_id=<user_id>[;session_id=<id>][;token=<token>]`.
pub fn connect_url(config: &Config, user_id: &str, session_id: Option<&str>) -> Result<ConnectUrl, ConnectUrlError> {
    let base = config.spark.connect_url.trim_end_matches('/');
    if !base.starts_with("sc://") {
        return Err(ConnectUrlError::Scheme(base.to_string()));
    }
    let mut url = format!("{base}/;user_id={user_id}");
    if let Some(id) = session_id {
        url.push_str(&format!(";session_id={id}"));
    }
    let token = client_token(config)?;
    if let Some(token) = &token {
        url.push_str(&format!(";token={token}"));
    }
    Ok(ConnectUrl { url, has_token: token.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spark_with_token(content: Option<&str>) -> (Config, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("pipeline-connect-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        if let Some(c) = content {
            std::fs::write(&file, c).unwrap();
        }
        let mut config = Config::defaults();
        config.spark.connect_token_file = file;
        (config, dir)
    }

    #[test]
    fn the_token_is_sent_but_never_shown() {
        let (config, dir) = spark_with_token(Some("s3cr3tTok3n\n"));
        let url = connect_url(&config, "pipeline", Some("6f1c7f0e-3b7a-4c55-9a43-2d8e5f1b7c10")).unwrap();
        assert_eq!(
            url.secret(),
            "sc://127.0.0.1:15002/;user_id=pipeline;session_id=6f1c7f0e-3b7a-4c55-9a43-2d8e5f1b7c10;token=s3cr3tTok3n"
        );
        assert!(url.has_token());
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cr3tTok3n"), "{shown}");
            assert!(shown.contains("token=<redacted>"), "{shown}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_token_file_means_no_token() {
        let (config, dir) = spark_with_token(None);
        let url = connect_url(&config, "probe", None).unwrap();
        assert_eq!(url.secret(), "sc://127.0.0.1:15002/;user_id=probe");
        assert!(!url.has_token());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_or_unsafe_tokens_are_errors() {
        for bad in ["", "  \n", "has space", "semi;colon", "quote\"d"] {
            let (config, dir) = spark_with_token(Some(bad));
            let err = connect_url(&config, "pipeline", None).unwrap_err().to_string();
            assert!(err.contains("Spark Connect token"), "{err}");
            assert!(!err.contains("colon") && !err.contains("quote"), "the token must not be echoed: {err}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_override_wins_over_the_file() {
        let (mut config, dir) = spark_with_token(Some("fromfile"));
        config.spark.connect_token = Some("fromenv".into());
        assert!(connect_url(&config, "x", None).unwrap().secret().ends_with(";token=fromenv"));
        config.spark.connect_token = Some("bad token".into());
        assert!(connect_url(&config, "x", None).unwrap_err().to_string().contains("PIPELINE__SPARK__CONNECT_TOKEN"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_scheme_is_checked() {
        let mut config = Config::defaults();
        config.spark.connect_url = "http://127.0.0.1:15002".into();
        assert!(matches!(connect_url(&config, "x", None), Err(ConnectUrlError::Scheme(_))));
    }

    #[test]
    fn the_token_file_defaults_to_the_state_folder() {
        let mut config = Config::defaults();
        config.cluster.state_dir = "/srv/state".into();
        assert_eq!(config.connect_token_file(), std::path::Path::new("/srv/state/secrets/spark-connect.token"));
        let rebased = config.clone().rebase(std::path::Path::new("/repo"));
        assert_eq!(rebased.connect_token_file(), std::path::Path::new("/srv/state/secrets/spark-connect.token"));
        config.spark.connect_token_file = "elsewhere/token".into();
        assert_eq!(
            config.rebase(std::path::Path::new("/repo")).connect_token_file(),
            std::path::Path::new("/repo/elsewhere/token")
        );
    }
}
