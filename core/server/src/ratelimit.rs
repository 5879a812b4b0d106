//! Who is asking, and how often they have been wrong: the client address of a request
//! (through the trusted proxies of `server.trusted_proxies`) and a per-address budget of
//! failed requests, so that guessing at an endpoint costs the guesser time and nobody else.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

/// The address a request comes from: the peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not one (the header is read right to left,
/// since only the entries our own proxies appended can be believed). `None` without a peer
/// address (a request built in a test).
pub fn client_ip(
    extensions: &Extensions,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break; // what a proxy we trust did not write cannot be read further
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// The key a client is counted under: its IPv4 address, or the /64 network of an IPv6 one
/// (one subscriber holds a whole /64 and could rotate through it).
fn key_of(ip: Option<IpAddr>) -> Option<IpAddr> {
    match ip? {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(net.into()))
        }
        v4 => Some(v4),
    }
}

/// The most client addresses tracked at once; beyond it, the addresses whose budget is full
/// again are forgotten first, then the longest idle.
const MAX_TRACKED: usize = 10_000;

/// A budget of failures per client address: `burst` failures at once, then one more every
/// `refill`. A client with nothing left is refused until its next failure would fit.
#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    refill: Duration,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, as of `at`.
    left: f64,
    at: Instant,
}

impl FailureLimiter {
    /// `burst` failures, then one per `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self, bucket: Bucket, now: Instant) -> f64 {
        let earned =
            now.saturating_duration_since(bucket.at).as_secs_f64() / self.refill.as_secs_f64();
        (bucket.left + earned).min(self.burst)
    }

    /// `Err(wait)` when `ip` has no failure left: how long until it has one.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let Some(bucket) = self.lock().get(&key_of(ip)).copied() else {
            return Ok(());
        };
        let left = self.current(bucket, now);
        if left >= 1.0 {
            Ok(())
        } else {
            Err(self.refill.mul_f64(1.0 - left))
        }
    }

    /// Counts one failure of `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut buckets = self.lock();
        if buckets.len() >= MAX_TRACKED {
            let burst = self.burst;
            buckets.retain(|_, b| self.current(*b, now) < burst);
            if buckets.len() >= MAX_TRACKED
                && let Some(idle) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k)
            {
                buckets.remove(&idle);
            }
        }
        let key = key_of(ip);
        let left = buckets
            .get(&key)
            .map_or(self.burst, |b| self.current(*b, now));
        buckets.insert(
            key,
            Bucket {
                left: (left - 1.0).max(0.0),
                at: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_peer(peer: &str) -> Extensions {
        let mut e = Extensions::new();
        e.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        e
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.1.1.1".parse().unwrap(),
        );
        // Behind our proxies: the nearest address they did not add.
        let ip = client_ip(&with_peer("10.0.0.2:5000"), &headers, &trusted);
        assert_eq!(ip, Some("203.0.113.7".parse().unwrap()));
        // A client writing the header itself is not believed.
        let ip = client_ip(&with_peer("198.51.100.1:5000"), &headers, &trusted);
        assert_eq!(ip, Some("198.51.100.1".parse().unwrap()));
        // Nothing trusted: the peer.
        let ip = client_ip(&with_peer("10.0.0.2:5000"), &headers, &[]);
        assert_eq!(ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(client_ip(&Extensions::new(), &headers, &trusted), None);
    }

    #[test]
    fn failures_are_budgeted_per_client_and_ipv6_per_network() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(3600));
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.failed(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        assert!(limiter.check(b).is_ok());
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for last in 1..=3 {
            limiter.failed(v6(&format!("2001:db8:1:2::{last}")));
        }
        assert!(limiter.check(v6("2001:db8:1:2:ffff::1")).is_err());
        assert!(limiter.check(v6("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn the_budget_comes_back_with_time() {
        let limiter = FailureLimiter::new(1, Duration::from_millis(20));
        let a = Some("192.0.2.1".parse().unwrap());
        limiter.failed(a);
        assert!(limiter.check(a).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(limiter.check(a).is_ok());
    }
}
