//! shared-infra: a campaign is quiet per account and loud in what its
//! accounts share. For each payment instrument and each network prefix
//! (/24 or /48), host state keeps a distinct count of the accounts seen on
//! it and of the young ones among them. A request scores by the crowd it
//! stands in: many accounts, most of them days old (a sign-up burst on one
//! card or subnet). Degree caps drop crowds too big to mean anything (a
//! cloud egress, a proxy serving thousands); accounts in an organisation
//! and old accounts weigh less.

use serde::Deserialize;
use vigil_sdk::batch_state::{BatchState, DAY_MS};
use vigil_sdk::hash::{key, tag};
use vigil_sdk::sketch::Crowd;
use vigil_sdk::{Detector, Host, Request, RequestExt, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub young_days: f64,
    /// A crowd smaller than this is not a cluster.
    pub min_accounts: f64,
    /// Degree caps: crowds bigger than these are ignored.
    pub card_cap: f64,
    pub prefix_cap: f64,
    /// A shared network is weaker evidence than a shared card: its score
    /// is capped here, so it flags only with corroboration.
    pub prefix_weight: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self { young_days: 14.0, min_accounts: 8.0, card_cap: 200.0, prefix_cap: 400.0, prefix_weight: 0.45 }
    }
}

const CARD: u64 = tag("shared-infra/card");
const PREFIX: u64 = tag("shared-infra/prefix");

pub struct SharedInfra {
    cfg: Config,
    state: BatchState<Crowd>,
}

impl Detector for SharedInfra {
    const DESCRIPTION: &'static str =
        "Accounts tied by a payment instrument or network prefix shared with many young accounts (degree-capped)";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        Ok(Self { cfg, state: BatchState::new(Crowd::decode, Crowd::encode) })
    }

    fn score(&mut self, batch: &[Request], host: &mut dyn Host) -> Vec<Signal> {
        let c = &self.cfg;
        // Every crowd the batch touches, read in one host call.
        let keys = |r: &Request, k: &mut Vec<u64>| {
            if r.account != 0 {
                k.extend(
                    [(CARD, r.payment_fingerprint), (PREFIX, r.ip_prefix)]
                        .into_iter()
                        .filter(|(_, h)| *h != 0)
                        .map(|(t, h)| key(t, h)),
                );
            }
        };
        // Crowds quiet for 30 days are forgotten.
        self.state.for_batch(
            host,
            batch,
            |r| r.ts_ms,
            keys,
            30 * DAY_MS,
            |state, host, r| {
                if r.account == 0 {
                    return Signal::none();
                }
                let young = r.young(c.young_days);
                let mut best: Option<(f32, &str, u64, f64, f64)> = None;
                for (what, tag, handle, cap, w) in [
                    ("payment instrument", CARD, r.payment_fingerprint, c.card_cap, 1.0),
                    ("network prefix", PREFIX, r.ip_prefix, c.prefix_cap, c.prefix_weight),
                ] {
                    if handle == 0 {
                        continue;
                    }
                    let crowd = state.update(host, key(tag, handle), r.ts_ms, |c| c.add(r.account, young));
                    let (all, y) = crowd.counts();
                    let s = w * crowd.suspicion(c.min_accounts, cap);
                    if s > 0.0 && best.is_none_or(|b| s > b.0) {
                        best = Some((s, what, handle, all, y));
                    }
                }
                let Some((s, what, handle, all, y)) = best else {
                    return Signal::none();
                };
                let weight = if young { 1.0 } else { 0.5 } * if r.org != 0 { 0.3 } else { 1.0 };
                let cluster =
                    format!("{}:{:08x}", if what.starts_with("payment") { "card" } else { "prefix" }, handle >> 32);
                Signal::new(
                    s * weight,
                    &["shared-infra", &cluster],
                    format!(
                        "{what} {cluster} shared by ~{all:.0} accounts, ~{y:.0} of them under {:.0} days old{}",
                        c.young_days,
                        if young { "; this account is one of the young ones" } else { "" }
                    ),
                )
            },
        )
    }
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(SharedInfra);

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::Field;
    use vigil_sdk::testing::{MemHost, request};

    const T0: i64 = 1_760_000_000_000;
    const DAY: i64 = 86_400_000;

    fn req(h: &mut MemHost, acct: &str, card: &str, age_days: i64, org: Option<&str>) -> Request {
        let mut r = request(T0);
        r.account = h.handle(Field::Account, acct);
        r.payment_fingerprint = h.handle(Field::PaymentFingerprint, card);
        r.account_created_ms = Some(T0 - age_days * DAY);
        if let Some(o) = org {
            r.org = h.handle(Field::Org, o);
        }
        r
    }

    #[test]
    fn a_card_shared_by_many_new_accounts_flags_them() {
        let mut d: SharedInfra = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        let batch: Vec<Request> = (0..25).map(|i| req(&mut h, &format!("a{i}"), "card-x", 1, None)).collect();
        let out = d.score(&batch, &mut h);
        assert_eq!(out[2].score, 0.0, "three accounts are not a cluster");
        let last = out.last().unwrap();
        assert!(last.score >= 0.8, "{last:?}");
        assert!(last.labels.iter().any(|l| l.starts_with("card:")), "names the cluster");
        // State carries to the next batch: a 26th account scores at once.
        let out = d.score(&[req(&mut h, "a25", "card-x", 1, None)], &mut h);
        assert!(out[0].score >= 0.8);
    }

    #[test]
    fn a_company_card_and_a_cloud_egress_do_not() {
        let mut d: SharedInfra = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        // 40 staff on a corporate card, a couple of them new hires.
        let staff: Vec<Request> =
            (0..40).map(|i| req(&mut h, &format!("s{i}"), "corp", if i < 2 { 3 } else { 500 }, Some("acme"))).collect();
        assert!(d.score(&staff, &mut h).iter().all(|s| s.score < 0.1));
        // 1,000 accounts, half new, behind one prefix: over the cap.
        let mut cloud = Vec::new();
        for i in 0..1000 {
            let mut r = req(&mut h, &format!("c{i}"), &format!("own-{i}"), if i % 2 == 0 { 1 } else { 300 }, None);
            r.ip_prefix = h.handle(Field::IpPrefix, "3.0.1.0/24");
            cloud.push(r);
        }
        let out = d.score(&cloud, &mut h);
        assert!(out[999].score == 0.0, "{:?}", out[999]);
    }
}
