//! Throttling of token guessing: a client that presented too many wrong tokens in a
//! window is refused, whatever it presents, for the rest of that window.
//!
//! Clients are told apart by address only (a reverse proxy in front makes every client
//! one address). The map is bounded: when full, expired windows are dropped first, then
//! the oldest, so presenting wrong tokens from many addresses cannot grow it without
//! bound.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Wrong tokens a client may present per window before it is refused.
pub const MAX_FAILURES: u32 = 10;
/// How long a window lasts from a client's first wrong token.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most clients tracked at once.
const CAPACITY: usize = 10_000;

/// One client's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Recent wrong tokens per client address.
#[derive(Debug)]
pub struct FailedAttempts {
    /// Clients with a window open. A mutex held for one lookup or insert, never across
    /// an `.await`; only requests under `/api/` that present a token touch it.
    clients: Mutex<HashMap<IpAddr, Window>>,
    max_failures: u32,
    window: Duration,
    capacity: usize,
}

impl Default for FailedAttempts {
    fn default() -> Self {
        Self::with_limits(MAX_FAILURES, WINDOW, CAPACITY)
    }
}

/// The key a client is counted under: its IPv4 address, or the /64 network of an IPv6
/// one, since a single host commonly holds a whole /64.
fn client(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

impl FailedAttempts {
    /// A tracker allowing `max_failures` per `window`, of at most `capacity` clients.
    pub fn with_limits(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            max_failures,
            window,
            capacity: capacity.max(1),
        }
    }

    /// How long `ip` must wait before it may try again, when it is refused now.
    pub fn refused_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock();
        let w = clients.get(&client(ip))?;
        let left = (w.started + self.window).checked_duration_since(now)?;
        (w.failures >= self.max_failures && !left.is_zero()).then_some(left)
    }

    /// Counts a wrong token presented by `ip`.
    pub fn record(&self, ip: IpAddr, now: Instant) {
        let key = client(ip);
        let mut clients = self.clients.lock();
        if !clients.contains_key(&key) && clients.len() >= self.capacity {
            clients.retain(|_, w| now.saturating_duration_since(w.started) < self.window);
            if clients.len() >= self.capacity {
                let oldest = clients
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    clients.remove(&oldest);
                }
            }
        }
        let w = clients.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Clients tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_is_refused_after_too_many_failures_until_its_window_ends() {
        let f = FailedAttempts::with_limits(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(f.refused_for(ip("10.0.0.1"), t0), None, "failure {i}");
            f.record(ip("10.0.0.1"), t0 + Duration::from_secs(i));
        }
        let left = f.refused_for(ip("10.0.0.1"), t0 + Duration::from_secs(20));
        assert_eq!(left, Some(Duration::from_secs(40)));
        assert_eq!(f.refused_for(ip("10.0.0.2"), t0), None, "others are not");
        assert_eq!(
            f.refused_for(ip("10.0.0.1"), t0 + Duration::from_secs(60)),
            None
        );
        // A new window starts from the next failure.
        f.record(ip("10.0.0.1"), t0 + Duration::from_secs(61));
        assert_eq!(
            f.refused_for(ip("10.0.0.1"), t0 + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network_and_mapped_v4_as_v4() {
        let f = FailedAttempts::with_limits(2, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        f.record(ip("2001:db8:1:2::1"), t0);
        f.record(ip("2001:db8:1:2:ffff::9"), t0);
        assert!(f.refused_for(ip("2001:db8:1:2::77"), t0).is_some());
        assert!(f.refused_for(ip("2001:db8:1:3::1"), t0).is_none());
        f.record(ip("::ffff:192.0.2.1"), t0);
        f.record(ip("192.0.2.1"), t0);
        assert!(f.refused_for(ip("192.0.2.1"), t0).is_some());
    }

    #[test]
    fn the_map_stays_bounded_dropping_expired_then_oldest_windows() {
        let f = FailedAttempts::with_limits(1, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..3u8 {
            f.record(
                IpAddr::from([10, 0, 0, i]),
                t0 + Duration::from_secs(u64::from(i)),
            );
        }
        f.record(ip("10.0.1.0"), t0 + Duration::from_secs(10));
        assert_eq!(f.tracked(), 3);
        assert!(
            f.refused_for(ip("10.0.0.0"), t0 + Duration::from_secs(10))
                .is_none(),
            "the oldest made room"
        );
        assert!(f
            .refused_for(ip("10.0.1.0"), t0 + Duration::from_secs(10))
            .is_some());
        for i in 0..1000u32 {
            f.record(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_secs(120));
        }
        assert_eq!(f.tracked(), 3);
    }
}
