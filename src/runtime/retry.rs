//! Per-object retry delays after failed reconciles: exponential, jittered and
//! capped, so an error never turns into a hot loop. An object's history is
//! forgotten when it reconciles cleanly or when it is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The retry history of every object that failed since its last success.
pub(crate) struct Retries {
    min_delay: Duration,
    max_delay: Duration,
    /// Keyed by the object reference's display form (kind, namespace and name).
    backoffs: Mutex<HashMap<String, ExponentialBackoff>>,
}

impl Retries {
    pub fn new(min_delay: Duration, max_delay: Duration) -> Retries {
        Retries { min_delay, max_delay, backoffs: Mutex::default() }
    }

    /// The delay before the next attempt on `key`.
    pub fn next_delay(&self, key: String) -> Duration {
        let mut backoffs = self.backoffs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let backoff = backoffs.entry(key).or_insert_with(|| {
            ExponentialBuilder::default()
                .with_min_delay(self.min_delay)
                .with_max_delay(self.max_delay)
                .with_jitter()
                .without_max_times()
                .build()
        });
        backoff.next().unwrap_or(self.max_delay)
    }

    pub fn forget(&self, key: &str) {
        self.backoffs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.backoffs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_up_to_the_cap_and_reset_when_forgotten() {
        let retries = Retries::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..12).map(|_| retries.next_delay("a".into())).collect();
        assert!(
            delays[0] >= Duration::from_millis(100) && delays[0] < Duration::from_millis(400),
            "{delays:?}"
        );
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(4)),
            "capped (jitter at most doubles): {delays:?}"
        );
        assert!(delays[11] >= Duration::from_secs(2), "reaches the cap: {delays:?}");
        assert_eq!(retries.tracked(), 1);
        retries.forget("a");
        assert_eq!(retries.tracked(), 0);
        assert!(retries.next_delay("a".into()) < Duration::from_millis(400), "starts over");
    }
}
