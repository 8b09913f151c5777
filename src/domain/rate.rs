//! Rate limits as GCRA (the generic cell rate algorithm): one number per key, the theoretical
//! arrival time of the next request, moved on by one interval per request admitted. The same
//! rule runs in process (embedded) and in one Redis script (every instance shares it).

use std::time::Duration;

/// `count` requests per `period`, with a burst of a tenth of them (at least one) at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Milliseconds between requests at the steady rate.
    pub interval_ms: u64,
    /// How far ahead of the steady rate a burst may run.
    pub tolerance_ms: u64,
}

impl Rate {
    /// `None` for 0: no limit.
    pub fn new(count: u32, period: Duration) -> Option<Self> {
        if count == 0 {
            return None;
        }
        let interval_ms = (period.as_millis() as u64 / u64::from(count)).max(1);
        let burst = u64::from(count.div_ceil(10));
        Some(Self {
            interval_ms,
            tolerance_ms: interval_ms * (burst - 1),
        })
    }
}

/// Admit a request at `now` (ms) given the key's theoretical arrival time `tat`: `Ok` with the
/// new one, or `Err` with how long until one would be admitted.
pub fn gcra(tat: Option<u64>, now: u64, rate: Rate) -> Result<u64, Duration> {
    let tat = tat.unwrap_or(now).max(now);
    let allowed_from = tat.saturating_sub(rate.tolerance_ms);
    if now < allowed_from {
        return Err(Duration::from_millis(allowed_from - now));
    }
    Ok(tat + rate.interval_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admitted of `offered` requests spread evenly over `millis`.
    fn admitted(rate: Rate, offered: u64, millis: u64) -> u64 {
        let mut tat = None;
        let mut ok = 0;
        for i in 0..offered {
            if let Ok(next) = gcra(tat, i * millis / offered, rate) {
                tat = Some(next);
                ok += 1;
            }
        }
        ok
    }

    #[test]
    fn five_times_the_rate_admits_the_rate_and_its_burst() {
        let rate = Rate::new(20, Duration::from_secs(1)).unwrap();
        assert_eq!(rate.interval_ms, 50);
        // 10 s at 100/s: 200 at the steady rate, and the burst of 2.
        let ok = admitted(rate, 1000, 10_000);
        assert!((200..=202).contains(&ok), "{ok}");
        assert!(Rate::new(0, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn a_refusal_says_when_to_come_back() {
        let rate = Rate::new(1, Duration::from_secs(60)).unwrap();
        let tat = gcra(None, 1_000, rate).unwrap();
        let wait = gcra(Some(tat), 1_000, rate).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(gcra(Some(tat), 61_000, rate).is_ok());
    }
}
