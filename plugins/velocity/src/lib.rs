//! velocity: how much an account, an API key and a payment instrument send
//! over sliding windows of event time, against configured budgets, weighed
//! by how young the account is. A payment instrument shared by a fleet of
//! quiet accounts adds up here even when each account stays under budget.

use serde::Deserialize;
use vigil_sdk::hash::{key, tag};
use vigil_sdk::{Batch, CounterOp, Detector, Host, Request, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Window for account and API key budgets.
    pub window_ms: u32,
    /// Requests per account per window before the account scores at all.
    pub account_requests: u64,
    /// Prompt + completion tokens per account per window.
    pub account_tokens: u64,
    /// Requests per API key per window.
    pub key_requests: u64,
    /// Window for the payment instrument budget (usually a day).
    pub payment_window_ms: u32,
    /// Requests per payment instrument per payment window, all accounts.
    pub payment_requests: u64,
    /// Accounts younger than this count fully.
    pub young_account_days: f64,
    /// Multiplier for accounts older than `young_account_days`.
    pub old_account_factor: f32,
    /// Multiplier when the account's age is not known.
    pub unknown_age_factor: f32,
    /// Multiplier for accounts in an organisation: shared corporate
    /// instruments and keys carry legitimately high volume.
    pub org_factor: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_ms: 3_600_000,
            account_requests: 240,
            account_tokens: 600_000,
            key_requests: 600,
            payment_window_ms: 86_400_000,
            payment_requests: 4_000,
            young_account_days: 7.0,
            old_account_factor: 0.5,
            unknown_age_factor: 0.8,
            org_factor: 0.5,
        }
    }
}

const ACCOUNT_REQS: u64 = tag("velocity/account-requests");
const ACCOUNT_TOKENS: u64 = tag("velocity/account-tokens");
const KEY_REQS: u64 = tag("velocity/key-requests");
const PAYMENT_REQS: u64 = tag("velocity/payment-requests");

pub struct Velocity {
    cfg: Config,
    // Reused across batches: no per-request allocation for the host call.
    ops: Vec<CounterOp>,
    slots: Vec<[Option<usize>; 4]>,
}

/// One budget dimension.
struct Dim {
    label: &'static str,
    what: &'static str,
    limit: u64,
    window_ms: u32,
}

impl Velocity {
    fn dims(&self) -> [Dim; 4] {
        let c = &self.cfg;
        [
            Dim {
                label: "account-rate",
                what: "requests by this account",
                limit: c.account_requests,
                window_ms: c.window_ms,
            },
            Dim {
                label: "account-tokens",
                what: "tokens by this account",
                limit: c.account_tokens,
                window_ms: c.window_ms,
            },
            Dim { label: "key-rate", what: "requests on this API key", limit: c.key_requests, window_ms: c.window_ms },
            Dim {
                label: "payment-rate",
                what: "requests on this payment instrument",
                limit: c.payment_requests,
                window_ms: c.payment_window_ms,
            },
        ]
    }

    fn age_factor(&self, r: &Request) -> (f32, Option<f64>) {
        match r.account_created_ms {
            Some(created) => {
                let days = (r.ts_ms - created) as f64 / 86_400_000.0;
                let f = if days < self.cfg.young_account_days { 1.0 } else { self.cfg.old_account_factor };
                (f, Some(days))
            }
            None => (self.cfg.unknown_age_factor, None),
        }
    }
}

/// The share of the window's volume that is over budget: 0 at the budget,
/// 0.5 at twice it, 0.9 at ten times.
fn excess(count: u64, limit: u64) -> f32 {
    if limit == 0 || count <= limit { 0.0 } else { (1.0 - limit as f64 / count as f64) as f32 }
}

fn human_window(ms: u32) -> String {
    match ms {
        m if m % 86_400_000 == 0 => format!("{}d", m / 86_400_000),
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m => format!("{m}ms"),
    }
}

impl Detector for Velocity {
    const DESCRIPTION: &'static str = "Request and token volume per account, API key and payment instrument over sliding windows, weighed by account age";

    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        if cfg.window_ms == 0 || cfg.payment_window_ms == 0 {
            return Err("config: windows must be positive".into());
        }
        Ok(Self { cfg, ops: Vec::new(), slots: Vec::new() })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        // All counter steps of the batch go to the host in one call.
        self.ops.clear();
        self.slots.clear();
        let (w, pw) = (self.cfg.window_ms, self.cfg.payment_window_ms);
        for r in batch {
            let mut slot = [None; 4];
            let mut push = |i: usize, k: u64, window_ms: u32, delta: u32, ops: &mut Vec<CounterOp>| {
                slot[i] = Some(ops.len());
                ops.push(CounterOp { key: k, now_ms: r.ts_ms, window_ms, delta });
            };
            if r.account != 0 {
                push(0, key(ACCOUNT_REQS, r.account), w, 1, &mut self.ops);
                let tokens = r.prompt_tokens.unwrap_or(0).saturating_add(r.completion_tokens.unwrap_or(0));
                push(1, key(ACCOUNT_TOKENS, r.account), w, tokens, &mut self.ops);
            }
            if r.api_key != 0 {
                push(2, key(KEY_REQS, r.api_key), w, 1, &mut self.ops);
            }
            if r.payment_fingerprint != 0 {
                push(3, key(PAYMENT_REQS, r.payment_fingerprint), pw, 1, &mut self.ops);
            }
            self.slots.push(slot);
        }
        let totals = host.counter_add(&self.ops);
        let dims = self.dims();
        batch
            .iter()
            .zip(&self.slots)
            .map(|(r, slot)| {
                let mut best: Option<(f32, usize, u64)> = None;
                for (i, s) in slot.iter().enumerate() {
                    let Some(s) = *s else { continue };
                    let count = totals.get(s).copied().unwrap_or(0);
                    let e = excess(count, dims[i].limit);
                    if e > 0.0 && best.is_none_or(|(b, _, _)| e > b) {
                        best = Some((e, i, count));
                    }
                }
                let Some((e, i, count)) = best else {
                    return Signal::none();
                };
                let (factor, age) = self.age_factor(r);
                let factor = factor * if r.org != 0 { self.cfg.org_factor } else { 1.0 };
                let d = &dims[i];
                let age_text = match age {
                    Some(days) => format!("account age {days:.1} days"),
                    None => "account age unknown".to_string(),
                };
                let mut labels = vec![d.label];
                if factor >= 1.0 && age.is_some() {
                    labels.push("young-account");
                }
                Signal::new(
                    e * factor,
                    &labels,
                    format!("{count} {} in {} (budget {}); {age_text}", d.what, human_window(d.window_ms), d.limit),
                )
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(Velocity);

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::Field;
    use vigil_sdk::testing::{MemHost, request};

    const T0: i64 = 1_760_000_000_000;
    const DAY: i64 = 86_400_000;

    fn req(host: &mut MemHost, account: &str, ts: i64) -> Request {
        let mut r = request(ts);
        r.account = host.handle(Field::Account, account);
        r.account_created_ms = Some(T0 - DAY);
        r.prompt_tokens = Some(100);
        r.completion_tokens = Some(100);
        r
    }

    #[test]
    fn quiet_account_scores_zero_and_a_burst_scores_high() {
        let mut v = vigil_sdk::testing::detector::<Velocity>();
        let mut h = MemHost::new();
        let quiet: Vec<Request> = (0..50).map(|i| req(&mut h, "a", T0 + i * 60_000)).collect();
        let out = v.score(&Batch::of(&quiet), &mut h);
        assert!(out.iter().all(|s| s.score == 0.0));

        // 2,400 requests in under an hour: ten times the budget.
        let burst: Vec<Request> = (0..2400).map(|i| req(&mut h, "b", T0 + i * 1000)).collect();
        let out = v.score(&Batch::of(&burst), &mut h);
        let last = out.last().unwrap();
        assert!(last.score > 0.85, "{last:?}");
        assert!(last.labels.contains(&"account-rate".to_string()));
        assert!(last.labels.contains(&"young-account".to_string()));
        assert!(last.reason.contains("requests by this account in 1h"), "{}", last.reason);
    }

    #[test]
    fn counters_continue_across_batches_and_instances() {
        let mut h = MemHost::new();
        let batch = |h: &mut MemHost, from: i64| -> Vec<Request> {
            (from..from + 300).map(|i| req(h, "c", T0 + i * 1000)).collect()
        };
        let b1 = batch(&mut h, 0);
        vigil_sdk::testing::detector::<Velocity>().score(&Batch::of(&b1), &mut h);
        // A fresh instance (a new version) sees the same host state.
        let b2 = batch(&mut h, 300);
        let out = vigil_sdk::testing::detector::<Velocity>().score(&Batch::of(&b2), &mut h);
        let s = out.last().unwrap();
        assert!(s.reason.starts_with("600 requests"), "{}", s.reason);
        assert!((s.score - 0.6).abs() < 0.01, "{}", s.score);
    }

    #[test]
    fn old_accounts_weigh_less_and_shared_cards_add_up() {
        let mut v = vigil_sdk::testing::detector::<Velocity>();
        let mut h = MemHost::new();
        let card = h.handle(Field::PaymentFingerprint, "card-1");
        // 200 accounts, each quiet (30 requests), one card: 6,000 a day.
        let mut batch = Vec::new();
        for a in 0..200 {
            for i in 0..30 {
                let mut r = req(&mut h, &format!("acct-{a}"), T0 + (a * 30 + i) * 10_000);
                r.account_created_ms = Some(T0 - 400 * DAY);
                r.payment_fingerprint = card;
                batch.push(r);
            }
        }
        let out = v.score(&Batch::of(&batch), &mut h);
        let s = out.last().unwrap();
        assert_eq!(s.labels, ["payment-rate"]);
        // excess 1/3 at 6,000 vs 4,000, halved for an old account.
        assert!((s.score - (1.0 / 3.0) * 0.5).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn ungranted_fields_mean_no_signal() {
        let mut v = vigil_sdk::testing::detector::<Velocity>();
        let mut h = MemHost::new();
        let batch: Vec<Request> = (0..5000).map(|i| request(T0 + i)).collect();
        assert!(v.score(&Batch::of(&batch), &mut h).iter().all(|s| s.score == 0.0));
        assert_eq!(h.entries(), 0);
    }

    #[test]
    fn config_typos_are_refused() {
        let configure = vigil_sdk::testing::configured::<Velocity>;
        assert!(configure(r#"{"acount_requests": 5}"#).err().unwrap().contains("acount_requests"));
        assert!(configure(r#"{"window_ms": 0}"#).is_err());
        assert!(configure("{}").is_ok());
    }
}
