//! When a schedule fires: cron expressions (5 fields, or 6 with seconds) in a time zone,
//! or a fixed interval. Pure computation on millisecond timestamps, no I/O, so the
//! leader's ticker and the API (`next_fire_ms`) agree, and both are unit-tested here.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Most cron ticks walked in one window while looking for the latest one due.
const MAX_WALK: usize = 100_000;

/// How a schedule's ticks fall.
#[derive(Debug, Clone)]
pub enum Timing {
    /// A cron expression, read in a time zone.
    Cron { cron: Box<Cron>, tz: Tz },
    /// Every `every_ms`, counted from `anchor_ms` (when the schedule was created).
    Interval { every_ms: i64, anchor_ms: i64 },
}

/// Why a timing is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("give exactly one of `cron` and `every_s`")]
    NotExactlyOne,
    #[error(
        "cron {0:?}: {1}; use 5 fields (minute hour day month weekday) or 6 with seconds first"
    )]
    BadCron(String, String),
    #[error("every_s must be between 1 and 31536000 (a year), not {0}")]
    BadInterval(u64),
    #[error("unknown time zone {0:?}: use an IANA name such as \"UTC\" or \"Europe/Paris\"")]
    BadZone(String),
    #[error("timezone applies to cron schedules only")]
    ZoneWithInterval,
}

impl Timing {
    /// Reads a schedule's `cron` or `every_s`, and `timezone` (UTC when absent).
    pub fn parse(
        cron: Option<&str>,
        every_s: Option<u64>,
        timezone: Option<&str>,
        anchor_ms: i64,
    ) -> Result<Self, TimingError> {
        match (cron, every_s) {
            (Some(expr), None) => {
                let tz: Tz = match timezone {
                    None => Tz::UTC,
                    Some(name) => name
                        .parse()
                        .map_err(|_| TimingError::BadZone(name.to_owned()))?,
                };
                let fields = expr.split_whitespace().count();
                if !(5..=6).contains(&fields) {
                    return Err(TimingError::BadCron(
                        expr.to_owned(),
                        format!("it has {fields} fields"),
                    ));
                }
                let cron = Cron::new(expr)
                    .with_seconds_optional()
                    .parse()
                    .map_err(|e| TimingError::BadCron(expr.to_owned(), e.to_string()))?;
                Ok(Timing::Cron {
                    cron: Box::new(cron),
                    tz,
                })
            }
            (None, Some(s)) => {
                if timezone.is_some() {
                    return Err(TimingError::ZoneWithInterval);
                }
                if !(1..=31_536_000).contains(&s) {
                    return Err(TimingError::BadInterval(s));
                }
                Ok(Timing::Interval {
                    every_ms: s as i64 * 1000,
                    anchor_ms,
                })
            }
            _ => Err(TimingError::NotExactlyOne),
        }
    }

    /// The first tick strictly after `after_ms`; `None` when there is none (a cron
    /// that can never match again, such as 30 February).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Timing::Interval {
                every_ms,
                anchor_ms,
            } => {
                if after_ms < *anchor_ms {
                    return Some(*anchor_ms);
                }
                let k = (after_ms - anchor_ms) / every_ms + 1;
                anchor_ms.checked_add(k.checked_mul(*every_ms)?)
            }
            Timing::Cron { cron, tz } => {
                // Cron works in whole seconds: start from the second holding `after_ms`.
                let secs = after_ms.div_euclid(1000);
                let start = tz.from_utc_datetime(&Utc.timestamp_opt(secs, 0).single()?.naive_utc());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp() * 1000)
            }
        }
    }

    /// The latest tick in `(after_ms, now_ms]`: the one to fire when one or more fell
    /// due since the last one handled (missed ticks are fired once, not each).
    pub fn latest_due(&self, after_ms: i64, now_ms: i64) -> Option<i64> {
        match self {
            Timing::Interval {
                every_ms,
                anchor_ms,
            } => {
                if now_ms < *anchor_ms {
                    return None;
                }
                let tick = anchor_ms + (now_ms - anchor_ms) / every_ms * every_ms;
                (tick > after_ms).then_some(tick)
            }
            Timing::Cron { .. } => {
                // The latest tick lies in the smallest window before now that holds any:
                // widening windows keep the walk short for every-second and yearly crons.
                for window in WINDOWS_MS {
                    let from = after_ms.max(now_ms.saturating_sub(window));
                    if let Some(t) = self.walk(from, now_ms) {
                        return Some(t);
                    }
                    if from == after_ms {
                        return None;
                    }
                }
                self.walk(after_ms, now_ms)
            }
        }
    }

    /// The last tick in `(from_ms, to_ms]`, walking tick by tick (at most [`MAX_WALK`]).
    fn walk(&self, from_ms: i64, to_ms: i64) -> Option<i64> {
        let mut cursor = from_ms;
        let mut latest = None;
        for _ in 0..MAX_WALK {
            match self.next_after(cursor) {
                Some(t) if t <= to_ms => {
                    latest = Some(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        latest
    }
}

/// Windows before now searched in turn for the latest due cron tick: a minute, an
/// hour, a day, a month, a year.
const WINDOWS_MS: [i64; 5] = [
    60_000,
    3_600_000,
    86_400_000,
    32 * 86_400_000,
    367 * 86_400_000,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn five_and_six_field_crons_give_the_next_tick() {
        let t = Timing::parse(Some("0 */6 * * *"), None, None, 0).unwrap();
        assert_eq!(
            t.next_after(ms("2026-01-01T05:59:59Z")),
            Some(ms("2026-01-01T06:00:00Z"))
        );
        assert_eq!(
            t.next_after(ms("2026-01-01T06:00:00Z")),
            Some(ms("2026-01-01T12:00:00Z"))
        );
        let t = Timing::parse(Some("*/10 * * * * *"), None, None, 0).unwrap();
        assert_eq!(
            t.next_after(ms("2026-01-01T00:00:01.500Z")),
            Some(ms("2026-01-01T00:00:10Z"))
        );
    }

    #[test]
    fn a_cron_is_read_in_its_time_zone_across_daylight_saving() {
        let t = Timing::parse(Some("0 9 * * *"), None, Some("Europe/Paris"), 0).unwrap();
        // Winter: 09:00 in Paris is 08:00 UTC; summer: 07:00 UTC.
        assert_eq!(
            t.next_after(ms("2026-01-10T00:00:00Z")),
            Some(ms("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            t.next_after(ms("2026-07-10T00:00:00Z")),
            Some(ms("2026-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn intervals_count_from_their_anchor() {
        let t = Timing::parse(None, Some(2), None, 1_000).unwrap();
        assert_eq!(t.next_after(0), Some(1_000));
        assert_eq!(t.next_after(1_000), Some(3_000));
        assert_eq!(t.next_after(2_999), Some(3_000));
        assert_eq!(t.latest_due(1_000, 2_999), None);
        assert_eq!(t.latest_due(1_000, 3_000), Some(3_000));
        // Missed ticks fire once: the latest of them.
        assert_eq!(t.latest_due(1_000, 10_500), Some(9_000));
    }

    #[test]
    fn missed_cron_ticks_give_the_latest_one() {
        let t = Timing::parse(Some("0 * * * *"), None, None, 0).unwrap();
        assert_eq!(
            t.latest_due(ms("2026-01-01T00:00:00Z"), ms("2026-01-01T05:30:00Z")),
            Some(ms("2026-01-01T05:00:00Z"))
        );
        assert_eq!(
            t.latest_due(ms("2026-01-01T05:00:00Z"), ms("2026-01-01T05:30:00Z")),
            None
        );
        let per_second = Timing::parse(Some("* * * * * *"), None, None, 0).unwrap();
        let now = ms("2026-01-03T00:00:00Z");
        assert_eq!(per_second.latest_due(now - 2 * 86_400_000, now), Some(now));
    }

    #[test]
    fn bad_timings_are_refused_with_a_reason() {
        assert_eq!(
            Timing::parse(None, None, None, 0).unwrap_err(),
            TimingError::NotExactlyOne
        );
        assert_eq!(
            Timing::parse(Some("* * * * *"), Some(5), None, 0).unwrap_err(),
            TimingError::NotExactlyOne
        );
        assert!(matches!(
            Timing::parse(Some("* * *"), None, None, 0).unwrap_err(),
            TimingError::BadCron(..)
        ));
        assert!(matches!(
            Timing::parse(Some("61 * * * *"), None, None, 0).unwrap_err(),
            TimingError::BadCron(..)
        ));
        assert_eq!(
            Timing::parse(Some("* * * * *"), None, Some("Mars/Olympus"), 0).unwrap_err(),
            TimingError::BadZone("Mars/Olympus".into())
        );
        assert_eq!(
            Timing::parse(None, Some(0), None, 0).unwrap_err(),
            TimingError::BadInterval(0)
        );
    }
}
