//! Rate limits (api.md §1.8): token buckets per user for message creation, uploads and reactions,
//! and per client address for the two login steps, as one layer around the router.
//!
//! The layer looks the request's route template and method up in [`LIMITED`] (which also puts
//! the 429 into the OpenAPI document). A per-address bucket is charged by the layer itself, before
//! anything else runs. A per-user bucket needs the user, which only authentication knows: the
//! layer hands the bucket to the request as a [`Charge`], and the authentication extractors
//! (`session.rs`) charge it as soon as the session is known — before the body is read, so a
//! refused request stores nothing and costs no extra database query. The layer then adds
//! `Retry-After` to the 429.
//!
//! Buckets live in this process's memory (`governor`, one keyed limiter per bucket); what that
//! means with several processes is in the README ("Deploying at scale").

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::config::{BucketConfig, LimitsConfig};
use crate::storage::UserId;

/// The buckets of api.md §1.8, each configured by `limits.<name>_per_minute` and `_burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Channel messages, thread replies and DM messages, per user.
    Messages,
    /// Attachment and avatar uploads, per user.
    Uploads,
    /// Adding, toggling and removing one's own reactions, per user.
    Reactions,
    /// `POST /auth/challenge` and `POST /auth/verify`, per client address.
    Auth,
}

impl Bucket {
    pub const ALL: [Bucket; 4] = [Bucket::Messages, Bucket::Uploads, Bucket::Reactions, Bucket::Auth];

    /// The prefix of its configuration keys.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Messages => "messages",
            Bucket::Uploads => "uploads",
            Bucket::Reactions => "reactions",
            Bucket::Auth => "auth",
        }
    }

    /// Whether the bucket is kept per client address (else per user).
    pub fn per_address(self) -> bool {
        self == Bucket::Auth
    }

    fn config(self, limits: &LimitsConfig) -> BucketConfig {
        match self {
            Bucket::Messages => limits.messages(),
            Bucket::Uploads => limits.uploads(),
            Bucket::Reactions => limits.reactions(),
            Bucket::Auth => limits.auth(),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The limited operations: method, route template, bucket. One table for the layer and the
/// OpenAPI document, so that a limit cannot be documented without being enforced or the reverse
/// (the API suite checks every template against the routes the server has).
pub const LIMITED: &[(&str, &str, Bucket)] = &[
    ("POST", "/api/v1/channels/{channel_id}/messages", Bucket::Messages),
    ("POST", "/api/v1/threads/{thread_id}/messages", Bucket::Messages),
    ("POST", "/api/v1/dms/{channel_id}/messages", Bucket::Messages),
    ("POST", "/api/v1/channels/{channel_id}/attachments", Bucket::Uploads),
    ("PUT", "/api/v1/profile/avatar", Bucket::Uploads),
    ("PUT", "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", Bucket::Reactions),
    ("DELETE", "/api/v1/channels/{channel_id}/messages/{message_id}/reactions", Bucket::Reactions),
    ("POST", "/api/v1/auth/challenge", Bucket::Auth),
    ("POST", "/api/v1/auth/verify", Bucket::Auth),
];

/// The bucket of an operation (`method` in any case), if it is limited.
pub fn bucket_for(method: &str, template: &str) -> Option<Bucket> {
    LIMITED.iter().find(|(m, t, _)| m.eq_ignore_ascii_case(method) && *t == template).map(|(_, _, b)| *b)
}

/// Who a bucket is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Subject {
    User(UserId),
    Address(IpAddr),
}

type Limiter = DefaultKeyedRateLimiter<Subject>;

/// The buckets of one server and who may speak for a client (`network.trusted_proxies`).
pub struct RateLimits {
    /// By [`Bucket::index`]; `None` = that bucket is off.
    limiters: [Option<Limiter>; 4],
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(limits: &LimitsConfig, trusted_proxies: &[String]) -> RateLimits {
        let limiters = Bucket::ALL.map(|bucket| bucket.config(limits).quota().map(RateLimiter::keyed));
        let trusted_proxies = trusted_proxies.iter().filter_map(|p| parse_network(p)).collect();
        RateLimits { limiters, trusted_proxies }
    }

    fn limiter(&self, bucket: Bucket) -> Option<&Limiter> {
        self.limiters[bucket.index()].as_ref()
    }

    /// Takes a token for `subject`, or says how long until one is there.
    fn take(&self, bucket: Bucket, subject: Subject) -> Result<(), Duration> {
        let Some(limiter) = self.limiter(bucket) else { return Ok(()) };
        limiter.check_key(&subject).map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forgets the buckets that are full again (they behave exactly like absent ones), so that
    /// memory follows the recently active users and addresses.
    fn forget_idle(&self) {
        for limiter in self.limiters.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Removes full buckets every minute until `shutdown`.
    pub fn spawn_cleaner(self: &Arc<Self>, shutdown: CancellationToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let limits = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                match limits.upgrade() {
                    Some(limits) => limits.forget_idle(),
                    None => return,
                }
            }
        });
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&addr))
    }

    /// The client's address: the socket's peer, or — when the peer is a trusted proxy — the
    /// nearest address in `X-Forwarded-For` (read right to left) that is not a trusted proxy
    /// itself. An entry that is not an address ends the walk at the hop that added it.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.is_trusted(client) {
            return client;
        }
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(text) = value.to_str() else { return client };
            for entry in text.rsplit(',') {
                let Some(hop) = parse_hop(entry.trim()) else { return client };
                client = hop;
                if !self.is_trusted(hop) {
                    return hop;
                }
            }
        }
        client
    }
}

/// A quota of `per_minute` tokens a minute and `burst` at once; `None` when either is 0 (off).
impl BucketConfig {
    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(Quota::per_minute(per_minute).allow_burst(burst))
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip())).map(canonical)
}

/// An address (`10.0.0.1`) or a network (`10.0.0.0/8`) of `network.trusted_proxies`.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The key of an address's bucket: IPv4 addresses one by one, IPv6 by /64 (what one subscriber
/// is usually given, and can draw addresses from at will).
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// A per-user bucket the request must be charged to once its user is known (see the module
/// documentation); it remembers the outcome for the layer.
#[derive(Clone)]
pub struct Charge(Arc<ChargeInner>);

struct ChargeInner {
    limits: Arc<RateLimits>,
    bucket: Bucket,
    /// `Err(wait)` when refused.
    outcome: OnceLock<Result<(), Duration>>,
}

impl Charge {
    /// Takes a token for `user` (once per request: later calls repeat the first outcome).
    fn charge(&self, user: UserId) -> Result<(), Duration> {
        *self.0.outcome.get_or_init(|| self.0.limits.take(self.0.bucket, Subject::User(user)))
    }
}

/// Called by the authentication extractors with the session's user: 429 when the request's
/// per-user bucket (if it has one) is empty.
pub fn charge_user(parts: &Parts, user: UserId) -> Result<(), ApiError> {
    match parts.extensions.get::<Charge>() {
        Some(charge) => charge.charge(user).map_err(|_| rate_limited()),
        None => Ok(()),
    }
}

fn rate_limited() -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limited")
}

/// `Retry-After` in whole seconds, at least 1.
fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

fn refuse(wait: Duration) -> Response {
    let mut response = rate_limited().into_response();
    response.headers_mut().insert(RETRY_AFTER, retry_after(wait));
    response
}

/// The layer: charges per-address buckets, hands per-user ones to authentication, and answers
/// 429 with `Retry-After`.
pub async fn rate_limit(State(limits): State<Arc<RateLimits>>, mut req: Request, next: Next) -> Response {
    let bucket = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| bucket_for(req.method().as_str(), path.as_str()))
        .filter(|bucket| limits.limiter(*bucket).is_some());
    let Some(bucket) = bucket else { return next.run(req).await };
    if bucket.per_address() {
        // Without a socket address (a router driven directly, not through the listener) there
        // is nobody to count.
        let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
            return next.run(req).await;
        };
        let client = limits.client_address(peer.ip(), req.headers());
        if let Err(wait) = limits.take(bucket, Subject::Address(address_key(client))) {
            return refuse(wait);
        }
        return next.run(req).await;
    }
    let charge = Charge(Arc::new(ChargeInner { limits, bucket, outcome: OnceLock::new() }));
    req.extensions_mut().insert(charge.clone());
    let mut response = next.run(req).await;
    match charge.0.outcome.get() {
        Some(Err(wait)) => {
            response.headers_mut().insert(RETRY_AFTER, retry_after(*wait));
        }
        Some(Ok(())) => {}
        None if response.status().is_success() => {
            // A limited route whose handler authenticates without charging: a bug here.
            tracing::error!(bucket = bucket.name(), "a rate-limited operation succeeded without charging its bucket");
            debug_assert!(false, "{} bucket not charged", bucket.name());
        }
        None => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> RateLimits {
        let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        RateLimits::new(&LimitsConfig::default(), &trusted)
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_peers() {
        let none = limits(&[]);
        assert_eq!(none.client_address(ip("10.0.0.1"), &xff(&["1.2.3.4"])), ip("10.0.0.1"));
        let proxied = limits(&["10.0.0.0/8", "192.168.1.1"]);
        // Untrusted peer: its header is ignored.
        assert_eq!(proxied.client_address(ip("8.8.8.8"), &xff(&["1.2.3.4"])), ip("8.8.8.8"));
        // Trusted peer: the nearest untrusted hop, right to left, across repeated headers.
        assert_eq!(proxied.client_address(ip("10.0.0.1"), &xff(&["1.2.3.4"])), ip("1.2.3.4"));
        assert_eq!(proxied.client_address(ip("10.0.0.1"), &xff(&["6.6.6.6, 1.2.3.4, 10.9.9.9"])), ip("1.2.3.4"));
        assert_eq!(
            proxied.client_address(ip("10.0.0.1"), &xff(&["6.6.6.6", "1.2.3.4:555, 192.168.1.1"])),
            ip("1.2.3.4")
        );
        assert_eq!(proxied.client_address(ip("10.0.0.1"), &xff(&["[2001:db8::7]:443"])), ip("2001:db8::7"));
        // All trusted: the leftmost; garbage stops the walk at the hop that added it.
        assert_eq!(proxied.client_address(ip("10.0.0.1"), &xff(&["10.1.1.1, 10.2.2.2"])), ip("10.1.1.1"));
        assert_eq!(proxied.client_address(ip("10.0.0.1"), &xff(&["1.2.3.4, nonsense, 10.2.2.2"])), ip("10.2.2.2"));
        assert_eq!(proxied.client_address(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // IPv4-mapped peers are IPv4.
        assert_eq!(proxied.client_address(ip("::ffff:10.0.0.1"), &xff(&["1.2.3.4"])), ip("1.2.3.4"));
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn buckets_refuse_past_their_burst_and_say_when() {
        let config = LimitsConfig { messages_per_minute: 60, messages_burst: 2, ..LimitsConfig::default() };
        let limits = RateLimits::new(&config, &[]);
        let (a, b) = (Subject::User(UserId(1)), Subject::User(UserId(2)));
        assert!(limits.take(Bucket::Messages, a).is_ok());
        assert!(limits.take(Bucket::Messages, a).is_ok());
        let wait = limits.take(Bucket::Messages, a).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO, "{wait:?}");
        assert_eq!(retry_after(wait), HeaderValue::from(1));
        assert!(limits.take(Bucket::Messages, b).is_ok(), "another user has a bucket of their own");
        let off = RateLimits::new(&LimitsConfig { messages_per_minute: 0, ..config }, &[]);
        assert!((0..1000).all(|_| off.take(Bucket::Messages, a).is_ok()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_millis(1)), HeaderValue::from(1));
        assert_eq!(retry_after(Duration::from_millis(2001)), HeaderValue::from(3));
        assert_eq!(retry_after(Duration::from_secs(2)), HeaderValue::from(2));
        assert_eq!(retry_after(Duration::ZERO), HeaderValue::from(1));
    }

    #[test]
    fn every_limited_operation_names_a_bucket_once() {
        for (i, (m, t, _)) in LIMITED.iter().enumerate() {
            assert!(LIMITED[i + 1..].iter().all(|(m2, t2, _)| (m2, t2) != (m, t)), "{m} {t} twice");
        }
        assert_eq!(bucket_for("post", "/api/v1/auth/challenge"), Some(Bucket::Auth));
        assert_eq!(bucket_for("GET", "/api/v1/channels/{channel_id}/messages"), None);
    }
}
