//! Configuration (api.md §7): built-in defaults → TOML file → `DECENTCOM_<SECTION>__<KEY>`
//! environment variables, later wins. Unknown keys are errors, so a typo never silently falls
//! back to a default. Validation happens at load; secrets never appear in printed configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "decentcom.toml";
/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "DECENTCOM_";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub network: NetworkConfig,
    pub storage: StorageConfig,
    pub features: FeaturesConfig,
    pub membership: MembershipConfig,
    pub content: ContentConfig,
    pub limits: LimitsConfig,
    pub logging: LoggingConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub bus: BusConfig,
    pub migrate: MigrateConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub name: String,
    pub description: Option<String>,
    /// Read at startup into the media store; exposed only as a media id.
    pub icon_path: Option<PathBuf>,
    /// When set, overrides `membership.mode`.
    pub membership_mode: Option<MembershipMode>,
    /// Base of invite links; normalised without a trailing `/`.
    pub public_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    pub bind_address: SocketAddr,
    /// CORS origins; empty = any origin.
    #[serde(deserialize_with = "string_list")]
    pub allowed_origins: Vec<String>,
    /// Open connections at most (gateway sockets included); the open-file limit must allow them.
    pub max_connections: u64,
    /// Proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the client (api.md §1.8).
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: Backend,
    /// The SQLite file (created if missing).
    pub database_path: PathBuf,
    /// The PostgreSQL URL. Secret: printed and logged only with the password redacted.
    pub database_url: Option<String>,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_seconds: u64,
    /// 0 = unlimited.
    pub idle_timeout_seconds: u64,
    /// PostgreSQL `statement_timeout`; 0 = none; ignored for SQLite.
    pub statement_timeout_seconds: u64,
    pub media: MediaConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaProvider {
    Local,
    S3,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    pub provider: MediaProvider,
    /// Local blob directory (created at startup).
    pub path: PathBuf,
    pub bucket: Option<String>,
    pub region: String,
    /// An S3-compatible endpoint; unset = AWS.
    pub endpoint: Option<String>,
    pub allow_http: bool,
    /// false = path-style requests.
    pub virtual_hosted_style: bool,
    /// Prepended to every object key.
    pub prefix: String,
    pub presign_ttl_seconds: u64,
    /// Temporary uploads (and unfinished S3 multipart uploads) older than this are removed.
    pub stale_upload_seconds: u64,
}

/// `decentcom migrate`: the other side of a migration. (The databases of both sides are
/// `storage.database_path` and `storage.database_url`.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrateConfig {
    /// The target's media store when it differs from the source's `[storage.media]` (local → S3
    /// or back); unset = both sides share `[storage.media]` and no blob is copied.
    pub target_media: Option<MediaConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    pub voice_channels: bool,
    pub video: bool,
    pub screen_share: bool,
    pub file_uploads: bool,
    pub emoji_reactions: bool,
    pub message_threads: bool,
    pub message_search: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipMode {
    Open,
    InviteOnly,
    Allowlist,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipConfig {
    pub mode: MembershipMode,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentConfig {
    /// In Unicode scalar values.
    pub max_message_length: usize,
    /// Bytes per uploaded file.
    pub max_file_size: u64,
    /// MIME allowlist checked against the detected type; empty = all.
    #[serde(deserialize_with = "string_list")]
    pub allowed_file_types: Vec<String>,
}

/// Rate limits (api.md §1.8): token buckets, `<bucket>_per_minute` tokens added a minute and
/// `<bucket>_burst` held at most; 0 for either turns the bucket off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Per user: channel messages, thread replies and DM messages.
    pub messages_per_minute: u32,
    pub messages_burst: u32,
    /// Per user: attachment and avatar uploads.
    pub uploads_per_minute: u32,
    pub uploads_burst: u32,
    /// Per user: adding or toggling a reaction, removing one's own.
    pub reactions_per_minute: u32,
    pub reactions_burst: u32,
    /// Per client address: `POST /auth/challenge` and `POST /auth/verify`.
    pub auth_per_minute: u32,
    pub auth_burst: u32,
}

/// One bucket's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    pub per_minute: u32,
    pub burst: u32,
}

impl LimitsConfig {
    pub fn messages(&self) -> BucketConfig {
        BucketConfig { per_minute: self.messages_per_minute, burst: self.messages_burst }
    }

    pub fn uploads(&self) -> BucketConfig {
        BucketConfig { per_minute: self.uploads_per_minute, burst: self.uploads_burst }
    }

    pub fn reactions(&self) -> BucketConfig {
        BucketConfig { per_minute: self.reactions_per_minute, burst: self.reactions_burst }
    }

    pub fn auth(&self) -> BucketConfig {
        BucketConfig { per_minute: self.auth_per_minute, burst: self.auth_burst }
    }

    /// Every bucket off (tests and benchmarks that flood on purpose).
    pub fn off() -> LimitsConfig {
        LimitsConfig {
            messages_per_minute: 0,
            messages_burst: 0,
            uploads_per_minute: 0,
            uploads_burst: 0,
            reactions_per_minute: 0,
            reactions_burst: 0,
            auth_per_minute: 0,
            auth_burst: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `"text"` or `"json"` (one object per line).
    pub format: LogFormat,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub session_ttl_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub heartbeat_interval_ms: u64,
    pub heartbeat_ack_timeout_ms: u64,
    /// How long after a disconnect a client may resume with `?resume=<s>`.
    pub resume_window_seconds: u64,
}

/// Where gateway events travel between processes (api.md §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusProviderKind {
    /// In memory: one process (the SQLite default).
    InProcess,
    /// A table of recent events in the PostgreSQL database, NOTIFY as the bell (the PostgreSQL
    /// default).
    Postgres,
    /// A NATS JetStream stream, for fleets that outgrow NOTIFY.
    Nats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Unset: `postgres` with the PostgreSQL backend, in-process with SQLite.
    pub provider: Option<BusProviderKind>,
    /// The NATS server of `provider = "nats"` (credentials from NATS_CREDS, NATS_TOKEN or
    /// NATS_USER / NATS_PASSWORD in the environment).
    pub nats_url: String,
    /// The JetStream stream (its lower-case name prefixes the subjects): one per deployment.
    pub nats_stream: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig { provider: None, nats_url: "nats://127.0.0.1:4222".into(), nats_stream: "DECENTCOM_EVENTS".into() }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "decentcom".into(),
            description: None,
            icon_path: None,
            membership_mode: None,
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bind_address: ([127, 0, 0, 1], 8080).into(),
            allowed_origins: Vec::new(),
            max_connections: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Sqlite,
            database_path: "decentcom.db".into(),
            database_url: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout_seconds: 5,
            idle_timeout_seconds: 600,
            statement_timeout_seconds: 30,
            media: MediaConfig::default(),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            provider: MediaProvider::Local,
            path: "media".into(),
            bucket: None,
            region: "us-east-1".into(),
            endpoint: None,
            allow_http: false,
            virtual_hosted_style: false,
            prefix: String::new(),
            presign_ttl_seconds: 3600,
            stale_upload_seconds: 3600,
        }
    }
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            voice_channels: true,
            video: true,
            screen_share: true,
            file_uploads: true,
            emoji_reactions: true,
            message_threads: true,
            message_search: true,
        }
    }
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig { max_message_length: 4000, max_file_size: 26_214_400, allowed_file_types: Vec::new() }
    }
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig { mode: MembershipMode::Open }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            messages_per_minute: 60,
            messages_burst: 30,
            uploads_per_minute: 30,
            uploads_burst: 20,
            reactions_per_minute: 60,
            reactions_burst: 30,
            auth_per_minute: 30,
            auth_burst: 60,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { session_ttl_seconds: 86_400 }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { heartbeat_interval_ms: 30_000, heartbeat_ack_timeout_ms: 10_000, resume_window_seconds: 300 }
    }
}

/// A list given as a TOML array or, from the environment, as one comma-separated string
/// (an empty string is an empty list).
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(list) => list,
        ListOrString::String(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

/// Why configuration could not be loaded. The message is for the operator, complete as is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `path` (or `./decentcom.toml` if it exists), then the process
    /// environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`] with an explicit environment (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        // DECENTCOM_<SECTION>__<KEY>[__<KEY>] → section.key; each value is parsed as the most
        // specific scalar and the key's type decides. A prefixed variable that names no key is
        // an unknown key like any other.
        for (name, value) in env {
            // Only DECENTCOM_<SECTION>__<KEY> names configuration (api.md §7.1); other variables
            // that merely share the prefix (e.g. DECENTCOM_TEST_PG_URL of the test suites) do not.
            if let Some(rest) = name.strip_prefix(ENV_PREFIX).filter(|rest| rest.contains("__")) {
                let path = rest.to_ascii_lowercase().replace("__", ".");
                figment = figment.merge(Serialized::default(&path, env_value(&value)));
            }
        }

        let config: Config = figment.extract().map_err(describe_figment_error)?;
        config.validated()
    }

    /// The bus provider in force: `bus.provider`, else the backend's default.
    pub fn bus_provider(&self) -> BusProviderKind {
        self.bus.provider.unwrap_or(match self.storage.backend {
            Backend::Sqlite => BusProviderKind::InProcess,
            Backend::Postgres => BusProviderKind::Postgres,
        })
    }

    /// The membership mode in force: `server.membership_mode` wins over `membership.mode`.
    pub fn membership_mode(&self) -> MembershipMode {
        self.server.membership_mode.unwrap_or(self.membership.mode)
    }

    fn validated(mut self) -> Result<Config, ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_owned()));
        if self.server.name.trim().is_empty() {
            return fail("server.name must not be empty");
        }
        match url::Url::parse(&self.server.public_url) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.has_host()
                    && url.query().is_none()
                    && url.fragment().is_none() =>
            {
                self.server.public_url = self.server.public_url.trim_end_matches('/').to_owned();
            }
            _ => return fail("server.public_url must be an absolute http or https URL"),
        }
        match self.storage.backend {
            Backend::Sqlite if self.storage.database_path.as_os_str().is_empty() => {
                return fail("storage.database_path is required when backend = \"sqlite\"");
            }
            Backend::Postgres if self.storage.database_url.as_deref().is_none_or(str::is_empty) => {
                return fail("storage.database_url is required when backend = \"postgres\"");
            }
            _ => {}
        }
        if let Some(url) = &self.storage.database_url
            && !url.is_empty()
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "storage.database_url must be a postgres:// URL, got {}",
                redact_url(url)
            )));
        }
        if self.storage.media.provider == MediaProvider::S3
            && self.storage.media.bucket.as_deref().is_none_or(str::is_empty)
        {
            return fail("storage.media.bucket is required when provider = \"s3\"");
        }
        if let Some(target) = &self.migrate.target_media
            && target.provider == MediaProvider::S3
            && target.bucket.as_deref().is_none_or(str::is_empty)
        {
            return fail("migrate.target_media.bucket is required when provider = \"s3\"");
        }
        if !(1..=604_800).contains(&self.storage.media.presign_ttl_seconds) {
            return fail("storage.media.presign_ttl_seconds must be between 1 and 604800");
        }
        if let Some(bad) = self.network.trusted_proxies.iter().find(|p| crate::http::limits::parse_network(p).is_none())
        {
            return Err(ConfigError(format!(
                "network.trusted_proxies: `{bad}` is not an IP address or network (e.g. 10.0.0.0/8)"
            )));
        }
        if self.storage.min_connections > self.storage.max_connections {
            return fail("storage.min_connections must not exceed storage.max_connections");
        }
        if !self.bus.nats_stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || self.bus.nats_stream.is_empty()
        {
            return fail("bus.nats_stream must be letters, digits, _ and - only");
        }
        // Secrets stay out of files and `decentcom config`: NATS credentials come from the
        // environment (NATS_CREDS, NATS_TOKEN, NATS_USER + NATS_PASSWORD) only.
        if url::Url::parse(&self.bus.nats_url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
            return fail(
                "bus.nats_url must not hold credentials: set NATS_USER and NATS_PASSWORD (or NATS_TOKEN, NATS_CREDS) in the environment",
            );
        }
        if self.bus_provider() == BusProviderKind::Postgres && self.storage.backend != Backend::Postgres {
            return fail("bus.provider = \"postgres\" needs storage.backend = \"postgres\"");
        }
        let positive: [(&str, u64); 10] = [
            ("gateway.resume_window_seconds", self.gateway.resume_window_seconds),
            ("network.max_connections", self.network.max_connections),
            ("storage.max_connections", self.storage.max_connections.into()),
            ("storage.media.stale_upload_seconds", self.storage.media.stale_upload_seconds),
            ("storage.acquire_timeout_seconds", self.storage.acquire_timeout_seconds),
            ("content.max_message_length", self.content.max_message_length as u64),
            ("content.max_file_size", self.content.max_file_size),
            ("auth.session_ttl_seconds", self.auth.session_ttl_seconds),
            ("gateway.heartbeat_interval_ms", self.gateway.heartbeat_interval_ms),
            ("gateway.heartbeat_ack_timeout_ms", self.gateway.heartbeat_ack_timeout_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("{key} must be greater than 0")));
        }
        Ok(self)
    }

    /// The effective configuration as TOML, with the database password redacted. (S3
    /// credentials are never part of the configuration: they come from AWS_* variables.)
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.storage.database_url = shown.storage.database_url.as_deref().map(redact_url);
        toml::to_string_pretty(&shown).expect("configuration always serialises")
    }
}

/// Parses an environment value as its most specific scalar, like figment does, so that the
/// key's type decides (booleans, integers, or text).
fn env_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    if let Ok(b) = value.parse::<bool>() {
        return Value::from(b);
    }
    if let Ok(n) = value.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(n) = value.parse::<i64>() {
        return Value::from(n);
    }
    Value::from(value.to_owned())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// Turns figment's error into one line naming the key, the bad value and where it came from.
fn describe_figment_error(err: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let key = err.path.join(".");
    let source = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (in {source})"),
            None => format!(" (in {})", m.name),
        })
        .unwrap_or_default();
    let message = match &err.kind {
        Kind::UnknownField(field, _) => {
            // figment's path may already end with the unknown field itself
            let full = if key.is_empty() || key == *field || key.ends_with(&format!(".{field}")) {
                if key.is_empty() { field.clone() } else { key.clone() }
            } else {
                format!("{key}.{field}")
            };
            let env_name = format!("{ENV_PREFIX}{}", full.to_ascii_uppercase().replace('.', "__"));
            format!("unknown configuration key `{full}`{source}; as an environment variable: {env_name}")
        }
        Kind::InvalidType(actual, expected) => {
            format!("invalid value for `{key}`: found {actual}, expected {expected}{source}")
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid value for `{key}`: found {actual}, expected {expected}{source}")
        }
        Kind::UnknownVariant(value, expected) => {
            format!("invalid value for `{key}`: `{value}`, expected one of {}{source}", expected.join(", "))
        }
        Kind::Message(msg) if !key.is_empty() => format!("invalid value for `{key}`: {msg}{source}"),
        _ => format!("{err}"),
    };
    ConfigError(message)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use pretty_assertions::assert_eq;

    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let f = file(toml);
        Config::load_with_env(Some(f.path()), env(vars)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_reference() {
        let config = load("", &[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.storage.backend, Backend::Sqlite);
        assert_eq!(config.storage.database_path, PathBuf::from("decentcom.db"));
        assert_eq!(config.network.bind_address.to_string(), "127.0.0.1:8080");
        assert_eq!(config.content.max_file_size, 26_214_400);
        assert_eq!(config.membership_mode(), MembershipMode::Open);
    }

    #[test]
    fn file_then_environment_later_wins() {
        let config = load(
            "[server]\nname = \"from file\"\n[storage]\nmax_connections = 5\n[storage.media]\nprefix = \"p/\"\n",
            &[
                ("DECENTCOM_SERVER__NAME", "from env"),
                ("DECENTCOM_STORAGE__MEDIA__PROVIDER", "s3"),
                ("DECENTCOM_STORAGE__MEDIA__BUCKET", "b"),
                ("DECENTCOM_FEATURES__MESSAGE_SEARCH", "false"),
                ("DECENTCOM_NETWORK__ALLOWED_ORIGINS", "https://a.example, https://b.example"),
                ("DECENTCOM_CONTENT__ALLOWED_FILE_TYPES", ""),
                ("UNRELATED", "ignored"),
                // shares the prefix but has no SECTION__KEY shape: not configuration
                ("DECENTCOM_TEST_PG_URL", "postgres://elsewhere/x"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.name, "from env");
        assert_eq!(config.storage.max_connections, 5);
        assert_eq!(config.storage.media.provider, MediaProvider::S3);
        assert_eq!(config.storage.media.prefix, "p/");
        assert!(!config.features.message_search);
        assert_eq!(config.network.allowed_origins, vec!["https://a.example", "https://b.example"]);
        assert_eq!(config.content.allowed_file_types, Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = load("[storage]\nbackend = \"sqlite\"\ndatabse_path = \"x.db\"\n", &[]).unwrap_err();
        assert!(err.contains("storage.databse_path"), "{err}");
        let err = load("[nonsense]\n", &[]).unwrap_err();
        assert!(err.contains("nonsense"), "{err}");
        let err = load("", &[("DECENTCOM_SERVER__NAEM", "x")]).unwrap_err();
        assert!(err.contains("`server.naem`") && err.contains("DECENTCOM_SERVER__NAEM"), "{err}");
        assert!(!err.contains("naem.naem"), "{err}");
        let err = load("[storage]\nbackend = \"sqlite\"\ndatabse_path = \"x.db\"\n", &[]).unwrap_err();
        assert!(err.contains("`storage.databse_path`"), "{err}");
    }

    #[test]
    fn type_errors_name_the_key_and_the_value() {
        let err = load("[storage]\nmax_connections = \"many\"\n", &[]).unwrap_err();
        assert!(err.contains("storage.max_connections") && err.contains("many"), "{err}");
        let err = load("", &[("DECENTCOM_STORAGE__BACKEND", "oracle")]).unwrap_err();
        assert!(err.contains("storage.backend") && err.contains("oracle"), "{err}");
    }

    #[test]
    fn validation_happens_at_load() {
        let cases = [
            ("[server]\nname = \"  \"\n", "server.name must not be empty"),
            ("[server]\npublic_url = \"ftp://x\"\n", "server.public_url must be an absolute http or https URL"),
            ("[server]\npublic_url = \"https://x/?q=1\"\n", "server.public_url must be an absolute http or https URL"),
            ("[storage]\nbackend = \"postgres\"\n", "storage.database_url is required when backend = \"postgres\""),
            ("[storage]\ndatabase_path = \"\"\n", "storage.database_path is required when backend = \"sqlite\""),
            ("[storage.media]\nprovider = \"s3\"\n", "storage.media.bucket is required when provider = \"s3\""),
            (
                "[storage.media]\npresign_ttl_seconds = 0\n",
                "storage.media.presign_ttl_seconds must be between 1 and 604800",
            ),
            ("[storage]\nmin_connections = 11\n", "storage.min_connections must not exceed storage.max_connections"),
            ("[content]\nmax_message_length = 0\n", "content.max_message_length must be greater than 0"),
            ("[gateway]\nheartbeat_interval_ms = 0\n", "gateway.heartbeat_interval_ms must be greater than 0"),
        ];
        for (toml, expected) in cases {
            assert_eq!(load(toml, &[]).unwrap_err(), expected, "for {toml:?}");
        }
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let err = Config::load_with_env(Some(Path::new("/nonexistent/decentcom.toml")), env(&[])).unwrap_err();
        assert_eq!(err.to_string(), "config file /nonexistent/decentcom.toml does not exist");
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let config = load("[server]\npublic_url = \"https://chat.example/\"\n", &[]).unwrap();
        assert_eq!(config.server.public_url, "https://chat.example");
    }

    #[test]
    fn printed_configuration_redacts_the_database_password() {
        let config = load(
            "",
            &[
                ("DECENTCOM_STORAGE__BACKEND", "postgres"),
                ("DECENTCOM_STORAGE__DATABASE_URL", "postgres://app:hunter2@db:5432/decentcom"),
            ],
        )
        .unwrap();
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/decentcom"), "{shown}");
        let err = load("[storage]\ndatabase_url = \"mysql://u:hunter2@h/d\"\n", &[]).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_example_file_documents_every_key_with_its_default() {
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../decentcom.example.toml")).unwrap();
        let parsed: Config = toml::from_str(&example).expect("the example parses with no unknown keys");
        assert_eq!(parsed, Config::default());
        let defaults: toml::Table = toml::from_str(&Config::default().to_redacted_toml()).unwrap();
        let uncommented: String = example
            .lines()
            .map(|l| {
                // `# key = value` documents a key without a default; prose comments stay comments
                let is_key = |l: &&str| {
                    l.split_once(" = ").is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                };
                l.strip_prefix("# ").filter(is_key).unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let documented: toml::Table = toml::from_str(&uncommented).expect("commented keys parse too");
        fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                let path = format!("{prefix}{k}");
                match v {
                    toml::Value::Table(inner) => keys(inner, &format!("{path}."), out),
                    _ => out.push(path),
                }
            }
        }
        let (mut want, mut have) = (Vec::new(), Vec::new());
        keys(&defaults, "", &mut want);
        keys(&documented, "", &mut have);
        for key in want {
            assert!(have.contains(&key), "decentcom.example.toml does not document {key}");
        }
    }
}
