//! output-harvest: distillation wants the teacher's outputs, so campaign
//! accounts ask for long completions (often cut at the max_tokens ceiling),
//! one-shot, never in a conversation. Per account, over a sliding window:
//! the share of long outputs, of ceiling hits and of single-turn requests.
//! A user with an occasional long answer stays low; an account whose
//! traffic is mostly long one-shot outputs scores high.

use serde::Deserialize;
use vigil_sdk::hash::{key, tag};
use vigil_sdk::{Batch, CounterOp, Detector, Host, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub window_ms: u32,
    /// Requests an account needs in the window before it is scored.
    pub min_requests: u64,
    /// A completion this long counts as output-heavy.
    pub heavy_tokens: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { window_ms: 7 * 86_400_000, min_requests: 8, heavy_tokens: 2000 }
    }
}

const N: u64 = tag("output-harvest/requests");
const HEAVY: u64 = tag("output-harvest/heavy");
const CEILING: u64 = tag("output-harvest/ceiling");
const SINGLE: u64 = tag("output-harvest/single-turn");

pub struct OutputHarvest {
    cfg: Config,
    ops: Vec<CounterOp>,
}

/// The evidence for one account, from its window counters.
pub struct Shares {
    pub n: u64,
    pub heavy: u64,
    pub ceiling: u64,
    pub single: u64,
}

impl Shares {
    pub fn score(&self, min_requests: u64) -> f32 {
        if self.n < min_requests.max(1) {
            return 0.0;
        }
        let n = self.n as f32;
        let (heavy, ceiling, single) = (self.heavy as f32 / n, self.ceiling as f32 / n, self.single as f32 / n);
        // Mostly long outputs, in one-shot requests, is the core: anyone gets
        // a long answer now and then. Ceiling hits add a little.
        let mostly_heavy = ((heavy - 0.35) / 0.45).clamp(0.0, 1.0);
        (mostly_heavy * single * single + 0.15 * ceiling).clamp(0.0, 1.0)
    }
}

impl Detector for OutputHarvest {
    const DESCRIPTION: &'static str =
        "Accounts harvesting outputs: long completions, max_tokens ceiling hits, single-turn requests";

    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        Ok(Self { cfg, ops: Vec::new() })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        let w = self.cfg.window_ms;
        self.ops.clear();
        for r in batch.iter().filter(|r| r.account != 0) {
            let completion = r.completion_tokens.unwrap_or(0);
            let max = r.max_tokens.unwrap_or(0);
            let flags = [
                1,
                u32::from(completion >= self.cfg.heavy_tokens),
                u32::from(max >= 256 && completion as u64 * 100 >= max as u64 * 98),
                u32::from(r.turn.unwrap_or(1) <= 1),
            ];
            for (t, d) in [N, HEAVY, CEILING, SINGLE].into_iter().zip(flags) {
                self.ops.push(CounterOp { key: key(t, r.account), now_ms: r.ts_ms, window_ms: w, delta: d });
            }
        }
        let totals = host.counter_add(&self.ops);
        let mut at = 0;
        batch
            .iter()
            .map(|r| {
                if r.account == 0 {
                    return Signal::none();
                }
                let t = &totals[at..at + 4];
                at += 4;
                let s = Shares { n: t[0], heavy: t[1], ceiling: t[2], single: t[3] };
                let score = s.score(self.cfg.min_requests);
                if score < 0.05 {
                    return Signal::none();
                }
                let mut labels = vec!["output-heavy"];
                if s.ceiling * 4 >= s.n {
                    labels.push("max-tokens-ceiling");
                }
                if s.single == s.n {
                    labels.push("single-turn");
                }
                Signal::new(
                    score,
                    &labels,
                    format!(
                        "{} of {} requests in the window had outputs of {}+ tokens, {} hit max_tokens, {} were single-turn",
                        s.heavy, s.n, self.cfg.heavy_tokens, s.ceiling, s.single
                    ),
                )
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(OutputHarvest);

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::testing::{MemHost, request};
    use vigil_sdk::{Field, Request};

    fn req(h: &mut MemHost, acct: &str, i: i64, completion: u32, max: u32, turn: u32) -> Request {
        let mut r = request(1_760_000_000_000 + i * 60_000);
        r.account = h.handle(Field::Account, acct);
        r.completion_tokens = Some(completion);
        r.max_tokens = Some(max);
        r.turn = Some(turn);
        r
    }

    #[test]
    fn harvesting_account_scores_high_and_a_chatty_user_low() {
        let mut d = vigil_sdk::testing::detector::<OutputHarvest>();
        let mut h = MemHost::new();
        let harvest: Vec<Request> =
            (0..12).map(|i| req(&mut h, "h", i, if i % 2 == 0 { 8192 } else { 7000 }, 8192, 1)).collect();
        let out = d.score(&Batch::of(&harvest), &mut h);
        assert_eq!(out[6].score, 0.0, "not before min_requests");
        let last = out.last().unwrap();
        assert!(last.score >= 0.9, "{last:?}");
        assert!(last.labels.contains(&"single-turn".to_string()));
        assert!(last.reason.starts_with("12 of 12 requests"), "{}", last.reason);

        // Long answers now and then, in conversations.
        let chat: Vec<Request> = (0..30)
            .map(|i| req(&mut h, "u", i, if i % 10 == 0 { 4096 } else { 300 }, 4096, 1 + (i % 3) as u32))
            .collect();
        let out = d.score(&Batch::of(&chat), &mut h);
        assert!(out.iter().all(|s| s.score < 0.2), "{:?}", out.iter().map(|s| s.score).collect::<Vec<_>>());
    }

    #[test]
    fn without_grants_nothing_is_counted() {
        let mut d = vigil_sdk::testing::detector::<OutputHarvest>();
        let mut h = MemHost::new();
        let out = d.score(&Batch::of(&[request(1)]), &mut h);
        assert_eq!(out[0].score, 0.0);
        assert_eq!(h.entries(), 0);
    }
}
