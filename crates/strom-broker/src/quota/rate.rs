//! A rate measured over `quota.window.num` samples of `quota.window.size.seconds` each, as
//! Kafka's `Rate` over a `SampledStat`: a value is added to the current sample; the rate is
//! the sum of the samples not yet expired divided by the time they span, counted as at least
//! `num - 1` whole windows (so a fresh sensor does not see a burst as a huge rate). From how far the rate is over its bound comes the throttle time, as Kafka's
//! `QuotaUtils.throttleTime`: long enough that the rate falls back to the bound.

/// One sample: the window it started in and what was recorded during it.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    start_ms: u64,
    value: f64,
}

#[derive(Debug, Clone)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
    window_ms: u64,
}

impl Rate {
    /// `num` samples (at least 2) of `window_ms` each, starting at `now_ms`.
    pub fn new(num: u32, window_ms: u64, now_ms: u64) -> Rate {
        let num = num.max(2) as usize;
        Rate {
            samples: vec![
                Sample {
                    start_ms: now_ms,
                    value: 0.0
                };
                num
            ],
            current: 0,
            window_ms: window_ms.max(1),
        }
    }

    fn span_ms(&self) -> u64 {
        self.window_ms * self.samples.len() as u64
    }

    /// Adds `value` at `now_ms`, moving to a fresh sample once the current one's window ended.
    pub fn record(&mut self, value: f64, now_ms: u64) {
        if now_ms >= self.samples[self.current].start_ms + self.window_ms {
            self.current = (self.current + 1) % self.samples.len();
            self.samples[self.current] = Sample {
                start_ms: now_ms,
                value: 0.0,
            };
        }
        self.samples[self.current].value += value;
    }

    /// Takes back a value recorded in the current sample (a throttled fetch sends no data).
    pub fn unrecord(&mut self, value: f64) {
        let s = &mut self.samples[self.current];
        s.value = (s.value - value).max(0.0);
    }

    /// Per second, over the samples still inside the span at `now_ms`.
    pub fn per_second(&self, now_ms: u64) -> f64 {
        let live = |s: &&Sample| s.start_ms + self.span_ms() > now_ms;
        let total: f64 = self.samples.iter().filter(live).map(|s| s.value).sum();
        total * 1000.0 / self.elapsed_ms(now_ms) as f64
    }

    /// Kafka's `Rate.windowSize`: the time since the oldest live sample began, plus a whole
    /// window for each of the `num - 1` it has not yet seen complete.
    fn elapsed_ms(&self, now_ms: u64) -> u64 {
        let oldest = self
            .samples
            .iter()
            .filter(|s| s.start_ms + self.span_ms() > now_ms)
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let elapsed = now_ms.saturating_sub(oldest);
        let full_windows = elapsed / self.window_ms;
        let min_full_windows = self.samples.len() as u64 - 1;
        let missing = min_full_windows.saturating_sub(full_windows);
        (elapsed + missing * self.window_ms).max(1)
    }

    /// How long to hold the client so that the rate falls back to `bound` per second; 0
    /// while it is within it.
    pub fn throttle_ms(&self, bound: f64, now_ms: u64) -> u64 {
        let rate = self.per_second(now_ms);
        if bound <= 0.0 || rate <= bound {
            return 0;
        }
        ((rate - bound) / bound * self.elapsed_ms(now_ms) as f64).round() as u64
    }

    /// When the sensor was last written to (for forgetting idle ones).
    pub fn last_sample_ms(&self) -> u64 {
        self.samples[self.current].start_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_sensor_spreads_a_burst_over_the_full_span() {
        let mut r = Rate::new(11, 1000, 0);
        r.record(10_000.0, 0);
        // 10 KB over at least 10 windows: 1 KB/s.
        assert_eq!(r.per_second(0), 1000.0);
        assert_eq!(r.throttle_ms(1000.0, 0), 0);
        assert_eq!(r.throttle_ms(500.0, 0), 10_000);
    }

    #[test]
    fn throttling_by_the_computed_time_brings_the_rate_back_to_the_bound() {
        let mut r = Rate::new(11, 1000, 0);
        let mut now = 0;
        // A client sending 100 KB every 10 ms against a 200 KB/s bound, sleeping when told.
        let mut sent = 0.0;
        while now < 60_000 {
            r.record(100_000.0, now);
            sent += 100_000.0;
            now += 10 + r.throttle_ms(200_000.0, now);
        }
        let observed = sent * 1000.0 / now as f64;
        // The throttle is computed right after each record, over samples that roll: the
        // long-run rate settles a little above the bound (as with Kafka's formula), never
        // far off it either way.
        assert!(
            observed > 200_000.0 * 0.9 && observed < 200_000.0 * 1.2,
            "observed {observed}"
        );
    }

    #[test]
    fn samples_older_than_the_span_are_forgotten() {
        let mut r = Rate::new(3, 1000, 0);
        r.record(3000.0, 0);
        // 3 KB over 0.5 s plus the two windows a fresh sensor counts as elapsed: 2.5 s.
        assert_eq!(r.per_second(500), 1200.0);
        assert_eq!(r.per_second(3500), 0.0);
        r.record(10.0, 3500);
        r.unrecord(10.0);
        assert_eq!(r.per_second(3500), 0.0);
    }
}
