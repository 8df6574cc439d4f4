//! Logs: one line per event on stderr, as text or as JSON (`logging.format`), filtered by
//! `RUST_LOG` (default `info`). A request's lines carry its `request_id` (the span opened by
//! `http::middleware::request_id`).
//!
//! No secret may reach a line at any level, whichever crate wrote it (the database driver, the S3
//! client, the HTTP stack): every line passes through [`scrub`] on its way out, which blanks
//! bearer tokens, `token` values, passwords in URLs (`scheme://user:***@host`), AWS signatures and
//! credentials (pre-signed URLs, `Authorization` headers) and the secrets of this process's own
//! configuration and environment (database password, S3 keys) wherever they appear.

use std::io::Write;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Config, LogFormat};

const REDACTED: &str = "***";

/// Installs the global subscriber for `config.logging` (once; later calls do nothing).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = ScrubbedStderr { secrets: Arc::new(secrets_of(config)) };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = match config.logging.format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()
        }
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init(),
    };
}

/// Literal secrets of this process: the database password, S3 keys (never from the file, but
/// the S3 client holds them) — blanked wherever they appear, even outside a URL.
fn secrets_of(config: &Config) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(url) = config.storage.database_url.as_deref().and_then(|u| url::Url::parse(u).ok())
        && let Some(password) = url.password()
    {
        secrets.push(password.to_owned());
        // As it appears decoded, too.
        if let Ok(decoded) = urlencoding_decode(password) {
            secrets.push(decoded);
        }
    }
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(value) = std::env::var(var) {
            secrets.push(value);
        }
    }
    // Short values would blank unrelated text; they are not worth much as secrets either.
    secrets.retain(|s| s.len() >= 4);
    secrets.sort();
    secrets.dedup();
    secrets
}

fn urlencoding_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
}

/// stderr, one scrubbed line per event.
#[derive(Clone)]
struct ScrubbedStderr {
    secrets: Arc<Vec<String>>,
}

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::with_capacity(256), secrets: self.secrets.clone() }
    }
}

/// Collects one event's output and writes it, scrubbed, when dropped (the formatter makes one
/// writer per event).
struct LineWriter {
    buf: Vec<u8>,
    secrets: Arc<Vec<String>>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let line = scrub(&text, &self.secrets);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// `line` without the secrets described in the module documentation.
pub fn scrub(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_owned();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    if out.contains("://") {
        out = redact_url_passwords(&out);
    }
    // Values after these markers (case-insensitive), up to a delimiter.
    const MARKERS: [&str; 7] =
        ["bearer ", "signature=", "credential=", "security-token=", "token=", "token\":\"", "password="];
    let lower = out.to_ascii_lowercase();
    if MARKERS.iter().any(|m| lower.contains(m)) {
        out = redact_after_markers(&out, &lower, &MARKERS);
    }
    out
}

/// Whether `c` ends a secret value: whitespace, quotes, separators of query strings, headers
/// and JSON.
fn ends_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '&' | ',' | ';' | '}' | ']' | ')' | '>' | '\\')
}

fn redact_after_markers(text: &str, lower: &str, markers: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let found = markers.iter().filter_map(|m| lower[i..].find(m).map(|at| (i + at, m.len()))).min();
        let Some((at, len)) = found else { break };
        let value_start = at + len;
        let value_end = text[value_start..].find(ends_value).map_or(text.len(), |e| value_start + e);
        out.push_str(&text[i..value_start]);
        if value_end > value_start {
            out.push_str(REDACTED);
        }
        i = value_end.max(value_start);
    }
    if i < text.len() {
        out.push_str(&text[i..]);
    }
    out
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for every URL in `text`.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after.find(|c: char| ends_value(c) || matches!(c, '/' | '?' | '#')).unwrap_or(after.len());
        let authority = &after[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at_sign), Some(colon)) if colon < at_sign => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[at_sign..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_tokens_passwords_and_signatures() {
        let secrets = vec!["hunter2-secret".to_owned()];
        let cases = [
            ("authorization: Bearer 0123456789abcdef0123456789abcdef", "authorization: Bearer ***"),
            (r#"{"headers":"Bearer abc"}"#, r#"{"headers":"Bearer ***"}"#),
            ("connecting to postgres://app:pw@db:5432/x", "connecting to postgres://app:***@db:5432/x"),
            ("nats://user:p%40ss@nats:4222 and https://h/x", "nats://user:***@nats:4222 and https://h/x"),
            (
                "GET https://s3/b/k?X-Amz-Algorithm=A&X-Amz-Credential=AKID%2F1&X-Amz-Signature=abcd&x=1",
                "GET https://s3/b/k?X-Amz-Algorithm=A&X-Amz-Credential=***&X-Amz-Signature=***&x=1",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKID/2024, SignedHeaders=host, Signature=ff00",
                "AWS4-HMAC-SHA256 Credential=***, SignedHeaders=host, Signature=***",
            ),
            ("/api/v1/gateway?token=abc&x=1", "/api/v1/gateway?token=***&x=1"),
            (r#"{"session_token":"abc","n":1}"#, r#"{"session_token":"***","n":1}"#),
            ("the password is hunter2-secret.", "the password is ***."),
            ("finished status=200", "finished status=200"),
            ("https://example.com/path", "https://example.com/path"),
        ];
        for (line, expected) in cases {
            assert_eq!(scrub(line, &secrets), expected, "for {line}");
        }
    }

    #[test]
    fn secrets_come_from_the_configuration() {
        let mut config = Config::default();
        config.storage.database_url = Some("postgres://app:s%3Acret@db/x".into());
        let secrets = secrets_of(&config);
        assert!(secrets.contains(&"s%3Acret".to_owned()) && secrets.contains(&"s:cret".to_owned()), "{secrets:?}");
    }
}
