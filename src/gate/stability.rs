//! The rule for "healthy": every probe has succeeded at least [`REQUIRED_SUCCESSES`] times in a
//! row, and the oldest success of each streak is at least [`MIN_SPAN`] old — one lucky answer
//! from a process about to crash is not health. A failure or a restart starts over.

use std::time::{Duration, Instant};

pub const REQUIRED_SUCCESSES: u32 = 3;
pub const MIN_SPAN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
struct Streak {
    count: u32,
    since: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Stability {
    streaks: Vec<Streak>,
}

impl Stability {
    /// For `n` probes; with none, the process alone must stay up (one pseudo-probe).
    pub fn new(n: usize) -> Stability {
        Stability {
            streaks: vec![Streak::default(); n.max(1)],
        }
    }

    pub fn record(&mut self, probe: usize, ok: bool, at: Instant) {
        let s = &mut self.streaks[probe];
        if ok {
            s.count += 1;
            s.since.get_or_insert(at);
        } else {
            *s = Streak::default();
        }
    }

    /// The process changed (crash-loop restart): nothing seen so far counts.
    pub fn reset(&mut self) {
        for s in &mut self.streaks {
            *s = Streak::default();
        }
    }

    pub fn successes(&self, probe: usize) -> u32 {
        self.streaks[probe].count
    }

    /// When every probe has its successes, how long until the window is long enough.
    pub fn wait_hint(&self, now: Instant) -> Option<Duration> {
        if self.streaks.iter().any(|s| s.count < REQUIRED_SUCCESSES) {
            return None;
        }
        let start = self.window_start()?;
        Some((start + MIN_SPAN).saturating_duration_since(now))
    }

    /// When the current window began: the latest streak start.
    pub fn window_start(&self) -> Option<Instant> {
        self.streaks
            .iter()
            .map(|s| s.since)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    pub fn stable(&self, now: Instant) -> bool {
        self.streaks.iter().all(|s| {
            s.count >= REQUIRED_SUCCESSES
                && s.since.is_some_and(|t| now.duration_since(t) >= MIN_SPAN)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_quick_successes_are_not_stable_until_two_seconds_have_passed() {
        let t0 = Instant::now();
        let mut s = Stability::new(1);
        for i in 0..5 {
            s.record(0, true, t0 + Duration::from_millis(100 * i));
        }
        assert!(!s.stable(t0 + Duration::from_millis(500)));
        assert!(s.stable(t0 + Duration::from_millis(2000)));
    }

    #[test]
    fn a_failure_or_restart_starts_the_streak_over() {
        let t0 = Instant::now();
        let mut s = Stability::new(2);
        for i in 0..4 {
            s.record(0, true, t0 + Duration::from_secs(i));
            s.record(1, true, t0 + Duration::from_secs(i));
        }
        assert!(s.stable(t0 + Duration::from_secs(4)));
        s.record(1, false, t0 + Duration::from_secs(4));
        assert!(!s.stable(t0 + Duration::from_secs(5)));
        s.reset();
        assert_eq!(s.successes(0), 0);
        assert!(!s.stable(t0 + Duration::from_secs(9)));
    }

    #[test]
    fn every_probe_must_be_stable() {
        let t0 = Instant::now();
        let mut s = Stability::new(2);
        for i in 0..4 {
            s.record(0, true, t0 + Duration::from_secs(i));
        }
        assert!(!s.stable(t0 + Duration::from_secs(10)));
    }
}
