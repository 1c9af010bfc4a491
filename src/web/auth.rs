//! Per-request rules of the web config: the rate limit, basic auth against
//! bcrypt hashes, and the extra response headers.
//!
//! `/healthz` is exempt from the rate limit and from basic auth, so that
//! probes (Docker's HEALTHCHECK, a kubelet) need no password; it says
//! nothing but "ok".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::config::{RateLimit, WebConfig};
use super::Shared;

/// The path that probes use; see the module comment.
pub const HEALTH_PATH: &str = "/healthz";

/// bcrypt of "fakepassword": checked for unknown users so that a wrong user
/// name costs as much time as a wrong password (as the toolkit does).
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// How many (user, hash, password) verdicts are remembered.
const CACHE_SIZE: usize = 100;

/// The request rules of one loaded config.
pub struct Rules {
    headers: Vec<(HeaderName, HeaderValue)>,
    users: HashMap<String, String>,
    limiter: Option<Mutex<Bucket>>,
}

impl Rules {
    pub fn new(c: &WebConfig) -> Result<Rules, String> {
        let mut headers = Vec::new();
        for (k, v) in &c.headers {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k}: {e}"))?;
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|e| format!("http_server_config.headers.{k}: {e}"))?;
            headers.push((name, value));
        }
        Ok(Rules {
            headers,
            users: c.users.clone().into_iter().collect(),
            limiter: c.rate_limit.map(|r| Mutex::new(Bucket::new(r))),
        })
    }
}

/// Go's `rate.Limiter`: a token bucket of `burst` tokens refilled at one
/// per `interval`, starting full. A burst of 0 allows nothing.
pub struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(limit: RateLimit) -> Bucket {
        Bucket {
            limit,
            tokens: limit.burst as f64,
            last: Instant::now(),
        }
    }

    pub fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let refill = elapsed.as_secs_f64() / self.limit.interval.as_secs_f64();
        self.tokens = (self.tokens + refill).min(self.limit.burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Verified credentials, kept across reloads. bcrypt costs tens of
/// milliseconds a check, so a verdict is remembered by a digest of (user,
/// hash, password): the plain password is never stored, and a changed hash
/// is a different key.
pub struct Verdicts {
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt at a time: a burst of bad passwords costs one core, not
    /// all of them.
    bcrypt: tokio::sync::Semaphore,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            cache: Mutex::new(HashMap::with_capacity(CACHE_SIZE)),
            bcrypt: tokio::sync::Semaphore::new(1),
        }
    }
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl Verdicts {
    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        crate::state::lock(&self.cache).get(key).copied()
    }

    /// Whether `password` is `user`'s, by the bcrypt `hash` of `users`.
    pub async fn check(&self, users: &HashMap<String, String>, user: &str, password: &str) -> bool {
        let (hash, known) = match users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let key = cache_key(user, hash, password);
        if let Some(ok) = self.cached(&key) {
            return ok && known;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        // Concurrent first requests with the same credentials wait here and
        // find the verdict of the first one.
        if let Some(ok) = self.cached(&key) {
            return ok && known;
        }
        let (pw, h) = (password.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &h).unwrap_or(false))
            .await
            .unwrap_or(false);
        self.remember(key, ok);
        ok && known
    }

    /// Keep a verdict, evicting an arbitrary one when full (as the toolkit).
    fn remember(&self, key: [u8; 32], ok: bool) {
        let mut cache = crate::state::lock(&self.cache);
        if cache.len() >= CACHE_SIZE && !cache.contains_key(&key) {
            if let Some(k) = cache.keys().next().copied() {
                cache.remove(&k);
            }
        }
        cache.insert(key, ok);
    }
}

/// `Authorization: Basic ...` as Go's `Request.BasicAuth` reads it.
pub fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let v = value.to_str().ok()?;
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("Basic ") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn plain(status: StatusCode) -> Response {
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        text,
    )
        .into_response()
}

/// The middleware: rate limit, then basic auth, then the handler; the
/// configured headers go on every response.
pub async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let active = shared.current();
    let rules = &active.rules;
    let exempt = req.uri().path() == HEALTH_PATH;
    let mut resp = 'resp: {
        if !exempt {
            if let Some(l) = &rules.limiter {
                if !crate::state::lock(l).allow_at(Instant::now()) {
                    break 'resp plain(StatusCode::TOO_MANY_REQUESTS);
                }
            }
            if !rules.users.is_empty() {
                let creds = req.headers().get(AUTHORIZATION).and_then(basic_credentials);
                let ok = match creds {
                    Some((u, p)) => shared.verdicts.check(&rules.users, &u, &p).await,
                    None => false,
                };
                if !ok {
                    let mut r = plain(StatusCode::UNAUTHORIZED);
                    r.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                    break 'resp r;
                }
            }
        }
        next.run(req).await
    };
    for (k, v) in &rules.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn basic_credentials_as_go_reads_them() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        // "alice:pa:ss" — the password may hold colons.
        assert_eq!(
            basic_credentials(&h("Basic YWxpY2U6cGE6c3M=")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic_credentials(&h("basic YWxpY2U6cGE6c3M=")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials(&h("Bearer YWxpY2U6cGE6c3M=")), None);
        assert_eq!(basic_credentials(&h("Basic !!!")), None);
        assert_eq!(basic_credentials(&h("Basic YWxpY2U=")), None); // no colon
        assert_eq!(basic_credentials(&h("Basic")), None);
    }

    #[test]
    fn token_bucket_like_go_rate_limiter() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit {
            interval: Duration::from_secs(1),
            burst: 2,
        });
        b.last = t0;
        assert!(b.allow_at(t0));
        assert!(b.allow_at(t0));
        assert!(!b.allow_at(t0));
        assert!(!b.allow_at(t0 + Duration::from_millis(500)));
        assert!(b.allow_at(t0 + Duration::from_millis(1000)));
        let mut none = Bucket::new(RateLimit {
            interval: Duration::from_secs(1),
            burst: 0,
        });
        assert!(!none.allow_at(t0 + Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn verdicts_are_cached_and_unknown_users_refused() {
        let v = Verdicts::default();
        // The toolkit's fixed hash: its password is "fakepassword".
        let users: HashMap<String, String> = [("alice".to_string(), DUMMY_HASH.to_string())].into();
        assert!(v.check(&users, "alice", "fakepassword").await);
        assert!(!v.check(&users, "alice", "wrong").await);
        // The unknown user's dummy check matches, and is still refused.
        assert!(!v.check(&users, "mallory", "fakepassword").await);
        assert_eq!(v.cache.lock().unwrap().len(), 3);
        // The cache is consulted before bcrypt: a remembered verdict wins
        // even where bcrypt would refuse.
        v.remember(cache_key("alice", DUMMY_HASH, "remembered"), true);
        assert!(v.check(&users, "alice", "remembered").await);
    }

    #[test]
    fn cache_stays_bounded() {
        let v = Verdicts::default();
        for i in 0..CACHE_SIZE + 10 {
            v.remember(cache_key(&format!("u{i}"), DUMMY_HASH, "x"), false);
        }
        assert_eq!(v.cache.lock().unwrap().len(), CACHE_SIZE);
    }
}
