//! lockstep: a campaign's scheduler spreads requests evenly over its
//! accounts, so each account sends at a steady interval, day and night.
//! People send in bursts (a conversation, then hours of nothing) and sleep.
//! Per account: the coefficient of variation of the gaps between requests
//! and the hours of the day it was seen in, weighed by account age and by
//! whether it belongs to an organisation (a company's batch job is steady
//! too, but it is related, not a fleet of strangers).

use serde::Deserialize;
use vigil_sdk::batch_state::{BatchState, DAY_MS};
use vigil_sdk::hash::{key, tag};
use vigil_sdk::{Batch, Detector, Host, Request, RequestExt, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Gaps needed before an account is judged.
    pub min_gaps: u32,
    /// Accounts younger than this weigh fully.
    pub young_days: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self { min_gaps: 6, young_days: 30.0 }
    }
}

/// Timing of one account: Welford's running mean and variance of gaps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timing {
    pub last_ms: i64,
    pub gaps: u32,
    pub mean: f64,
    pub m2: f64,
    /// Bit h set: seen in UTC hour h.
    pub hours: u32,
}

impl Timing {
    pub fn observe(&mut self, ts: i64) {
        if self.last_ms != 0 && ts > self.last_ms {
            let gap = (ts - self.last_ms) as f64;
            self.gaps += 1;
            let d = gap - self.mean;
            self.mean += d / self.gaps as f64;
            self.m2 += d * (gap - self.mean);
        }
        self.last_ms = self.last_ms.max(ts);
        self.hours |= 1 << (ts.div_euclid(3_600_000).rem_euclid(24));
    }

    pub fn cv(&self) -> f64 {
        if self.gaps < 2 || self.mean <= 0.0 {
            return f64::INFINITY;
        }
        (self.m2 / (self.gaps - 1) as f64).sqrt() / self.mean
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&self.last_ms.to_le_bytes());
        v.extend_from_slice(&self.gaps.to_le_bytes());
        v.extend_from_slice(&self.mean.to_le_bytes());
        v.extend_from_slice(&self.m2.to_le_bytes());
        v.extend_from_slice(&self.hours.to_le_bytes());
        v
    }

    fn decode(b: &[u8]) -> Self {
        if b.len() != 32 {
            return Self::default();
        }
        let b8 = |i: usize| -> [u8; 8] { b[i..i + 8].try_into().unwrap() };
        let b4 = |i: usize| -> [u8; 4] { b[i..i + 4].try_into().unwrap() };
        Timing {
            last_ms: i64::from_le_bytes(b8(0)),
            gaps: u32::from_le_bytes(b4(8)),
            mean: f64::from_le_bytes(b8(12)),
            m2: f64::from_le_bytes(b8(20)),
            hours: u32::from_le_bytes(b4(28)),
        }
    }
}

const TIMING: u64 = tag("lockstep/timing");

pub struct Lockstep {
    cfg: Config,
    state: BatchState<Timing>,
}

impl Config {
    /// Score for an account's timing (before age and relation weights).
    pub fn regularity(&self, t: &Timing) -> f32 {
        if t.gaps < self.min_gaps {
            return 0.0;
        }
        // CV 0.2 or less: machine-even; 0.6 or more: human. Even gaps inside
        // one sitting mean little: the evenness must hold across the day.
        let regular = ((0.6 - t.cv()) / 0.4).clamp(0.0, 1.0);
        let hours = t.hours.count_ones() as f64;
        let across_the_day = ((hours - 3.0) / 9.0).clamp(0.0, 1.0);
        (regular * across_the_day) as f32
    }

    fn signal(&self, r: &Request, t: &Timing) -> Signal {
        let base = self.regularity(t);
        if base <= 0.0 {
            return Signal::none();
        }
        let age = r.account_age_days();
        let young = r.young(self.young_days);
        let related = r.org != 0;
        let weight = if young { 1.0 } else { 0.75 } * if related { 0.25 } else { 1.0 };
        let mut labels = vec!["regular-timing"];
        if t.hours.count_ones() >= 18 {
            labels.push("round-the-clock");
        }
        Signal::new(
            base * weight,
            &labels,
            format!(
                "{} gaps averaging {:.0} min with {:.0}% variation; active in {} of 24 hours{}{}",
                t.gaps,
                t.mean / 60_000.0,
                t.cv() * 100.0,
                t.hours.count_ones(),
                age.map(|d| format!("; account {d:.0} days old")).unwrap_or_default(),
                if related { "; belongs to an organisation" } else { "" }
            ),
        )
    }
}

impl Detector for Lockstep {
    const DESCRIPTION: &'static str = "Machine-regular, round-the-clock request timing on young, unrelated accounts";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        Ok(Self { cfg, state: BatchState::new(Timing::decode, Timing::encode) })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        let cfg = &self.cfg;
        let keys = |r: &Request, k: &mut Vec<u64>| {
            if r.account != 0 {
                k.push(key(TIMING, r.account));
            }
        };
        // Accounts quiet for two weeks are forgotten.
        self.state.for_batch(
            host,
            batch,
            |r| r.ts_ms,
            keys,
            14 * DAY_MS,
            |state, host, r| {
                if r.account == 0 {
                    return Signal::none();
                }
                let t = state.get(host, key(TIMING, r.account), r.ts_ms);
                t.observe(r.ts_ms);
                cfg.signal(r, t)
            },
        )
    }
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(Lockstep);

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::Field;
    use vigil_sdk::testing::{MemHost, request};

    const T0: i64 = 1_760_000_000_000;

    fn req(h: &mut MemHost, acct: &str, ts: i64, age_days: i64, org: bool) -> Request {
        let mut r = request(ts);
        r.account = h.handle(Field::Account, acct);
        r.account_created_ms = Some(ts - age_days * 86_400_000);
        if org {
            r.org = h.handle(Field::Org, "org");
        }
        r
    }

    #[test]
    fn even_round_the_clock_traffic_flags_bursty_human_traffic_does_not() {
        let mut d: Lockstep = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        // Every 66 minutes, +-10%, for two days, across batches.
        let bot: Vec<Request> =
            (0..44).map(|i| req(&mut h, "bot", T0 + i * 3_960_000 + (i % 3 - 1) * 300_000, 2, false)).collect();
        let mut last = Signal::none();
        for chunk in bot.chunks(7) {
            last = d.score(&Batch::of(chunk), &mut h).pop().unwrap();
        }
        assert!(last.score >= 0.8, "{last:?}");
        assert!(last.labels.contains(&"round-the-clock".to_string()));

        // Bursts: three turns a minute apart, then hours of nothing, daytime only.
        let mut human = Vec::new();
        for day in 0..3 {
            for session in 0..4 {
                for turn in 0..3 {
                    let ts = T0 + day * 86_400_000 + (9 + session * 3) * 3_600_000 + turn * 70_000;
                    human.push(req(&mut h, "human", ts, 2, false));
                }
            }
        }
        let out = d.score(&Batch::of(&human), &mut h);
        assert!(out.iter().all(|s| s.score < 0.2), "{:?}", out.last());
    }

    #[test]
    fn an_old_related_batch_job_weighs_little() {
        let mut d: Lockstep = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        let job: Vec<Request> = (0..100).map(|i| req(&mut h, "etl", T0 + i * 30_000, 400, true)).collect();
        let out = d.score(&Batch::of(&job), &mut h);
        assert!(out.last().unwrap().score < 0.5, "{:?}", out.last());
    }

    #[test]
    fn timing_round_trips_through_state() {
        let mut t = Timing::default();
        for i in 0..5 {
            t.observe(T0 + i * 1000);
        }
        assert_eq!(Timing::decode(&t.encode()), t);
        assert_eq!(Timing::decode(&[1, 2]), Timing::default());
    }
}
