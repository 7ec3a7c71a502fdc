//! shared-infra: a campaign is quiet per account and loud in what its
//! accounts share: payment instruments and networks.
//!
//! Per payment instrument and per network prefix (/24 or /48), a host
//! window set holds the accounts seen on it, tagged young (days old),
//! hopping (see below) and outside any organisation. A request scores by
//! what it shares:
//! - a **young crowd**: many accounts on one card or prefix, most of them
//!   days old (a sign-up burst). Degree caps drop crowds too big to mean
//!   anything (a cloud egress); organisations and old accounts weigh less.
//! - a **proxy pool**: the account hops, using many prefixes across several
//!   networks (ASNs) in a week, and this prefix is one that other hopping
//!   accounts use too. A phone on a carrier's NAT changes prefix but not
//!   network; a laptop moving between home and office hops alone. Weak on
//!   its own (`pool_score`): it is evidence for the campaign stage.
//! - a **card group**: a card shared by a few accounts outside any
//!   organisation (3 to `card_group_max`). Families share cards too, so
//!   this is weak supporting evidence only (`card_score`).
//!
//! Labels `card:<id>`, `prefix:<id>` and `pool:<id>` name what is shared.
//! Memory (host state): per card about 60 bytes a week it is used while
//! few accounts use it, at most 5 weekly buckets; per prefix and per
//! account (its prefixes and networks), at most 7 daily buckets of the
//! same; a bucket with more than 16 members is a sketch of 128 bytes per
//! tag. All within the host's state bounds.

use serde::Deserialize;
use vigil_sdk::batch_state::DAY_MS;
use vigil_sdk::hash::{key, tag};
use vigil_sdk::sets::{SetViewExt, Shape, crowd_suspicion};
use vigil_sdk::{Batch, Detector, Host, Request, RequestExt, SetView, Signal};

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
    /// An account hops when it used this many prefixes in a week...
    pub hop_prefixes: u32,
    /// ...across this many networks (ASNs).
    pub hop_networks: u32,
    /// A prefix is a pool exit when this many hopping accounts used it in
    /// a week, and not more than `pool_cap`.
    pub pool_min: u32,
    pub pool_cap: u32,
    pub pool_score: f32,
    /// A card shared by 3 to this many accounts outside organisations.
    pub card_group_max: u32,
    pub card_score: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            young_days: 14.0,
            min_accounts: 8.0,
            card_cap: 200.0,
            prefix_cap: 400.0,
            prefix_weight: 0.45,
            hop_prefixes: 5,
            hop_networks: 3,
            pool_min: 4,
            pool_cap: 1000,
            pool_score: 0.15,
            card_group_max: 20,
            card_score: 0.1,
        }
    }
}

const CARD: u64 = tag("shared-infra/card");
const PREFIX: u64 = tag("shared-infra/prefix");
const HOPS: u64 = tag("shared-infra/hops");
const NETWORKS: u64 = tag("shared-infra/networks");

/// Set tags.
const YOUNG: u8 = 1;
const HOPPING: u8 = 2;
const NO_ORG: u8 = 4;

/// Cards: five weekly buckets (about the 30 days a crowd used to be kept).
const CARDS: Shape = Shape::new(7 * DAY_MS, 5);
/// Prefixes, and each account's prefixes and networks: a week by day.
const WEEK: Shape = Shape::new(DAY_MS, 7);

pub struct SharedInfra {
    cfg: Config,
}

/// What one request shares, by score.
struct Found {
    score: f32,
    labels: Vec<String>,
    reason: String,
}

impl Detector for SharedInfra {
    const DESCRIPTION: &'static str = "Accounts tied by a payment instrument or network: young crowds (degree-capped), \
         proxy pools that hopping accounts share, cards shared in small groups";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        if cfg.pool_min < 2 || cfg.pool_cap < cfg.pool_min || cfg.card_group_max < 3 {
            return Err(
                "config: pool_min must be at least 2, pool_cap at least pool_min, card_group_max at least 3".into()
            );
        }
        Ok(Self { cfg })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        let c = &self.cfg;
        // First call: each account's prefixes and networks this week, so
        // that the second can tag it as hopping or not.
        let mut ops = Vec::new();
        for r in batch.iter().filter(|r| r.account != 0 && r.ip_prefix != 0) {
            ops.push(WEEK.add(key(HOPS, r.account), r.ip_prefix, 0, r.ts_ms));
            ops.push(WEEK.add(key(NETWORKS, r.account), u64::from(r.asn.unwrap_or(0)) + 1, 0, r.ts_ms));
        }
        let hops = host.sets_update(&ops);
        let mut hops = hops.chunks(2);
        // Second call: what each request shares.
        ops.clear();
        let mut at = Vec::with_capacity(batch.len());
        for r in batch {
            if r.account == 0 {
                at.push(None);
                continue;
            }
            let hopping = if r.ip_prefix != 0 {
                let h = hops.next().unwrap_or_default();
                h.len() == 2 && h[0].count >= c.hop_prefixes && h[1].count >= c.hop_networks
            } else {
                false
            };
            let tags = (u8::from(r.young(c.young_days)) * YOUNG)
                | (u8::from(hopping) * HOPPING)
                | (u8::from(r.org == 0) * NO_ORG);
            let first = ops.len();
            if r.payment_fingerprint != 0 {
                ops.push(CARDS.add(key(CARD, r.payment_fingerprint), r.account, tags, r.ts_ms));
            }
            if r.ip_prefix != 0 {
                ops.push(WEEK.add(key(PREFIX, r.ip_prefix), r.account, tags, r.ts_ms));
            }
            at.push(Some((first, hopping)));
        }
        let views = host.sets_update(&ops);
        batch
            .iter()
            .zip(at)
            .map(|(r, at)| {
                let Some((first, hopping)) = at else { return Signal::none() };
                let mut next = views.get(first..).unwrap_or_default().iter();
                let card = if r.payment_fingerprint != 0 { next.next() } else { None };
                let prefix = if r.ip_prefix != 0 { next.next() } else { None };
                match self.judge(r, card, prefix, hopping) {
                    Some(f) => {
                        let labels: Vec<&str> = f.labels.iter().map(String::as_str).collect();
                        Signal::new(f.score, &labels, f.reason)
                    }
                    None => Signal::none(),
                }
            })
            .collect()
    }
}

impl SharedInfra {
    fn judge(&self, r: &Request, card: Option<&SetView>, prefix: Option<&SetView>, hopping: bool) -> Option<Found> {
        let c = &self.cfg;
        let young = r.young(c.young_days);
        let weight = if young { 1.0 } else { 0.5 } * if r.org != 0 { 0.3 } else { 1.0 };
        let mut parts: Vec<(f32, String, String)> = Vec::new();
        let card_id = format!("card:{:08x}", r.payment_fingerprint >> 32);
        let prefix_id = format!("{:08x}", r.ip_prefix >> 32);
        if let Some(v) = card {
            let (all, y) = (f64::from(v.count), f64::from(v.tagged_with(YOUNG)));
            let s = weight * crowd_suspicion(all, y, c.min_accounts, c.card_cap);
            if s > 0.0 {
                parts.push((s, card_id.clone(), format!("payment instrument {card_id} shared by ~{all:.0} accounts, ~{y:.0} of them under {:.0} days old", c.young_days)));
            }
            let group = v.tagged_with(NO_ORG);
            if r.org == 0 && (3..=c.card_group_max).contains(&group) {
                parts.push((
                    c.card_score,
                    card_id.clone(),
                    format!("payment instrument {card_id} shared by {group} accounts outside any organisation"),
                ));
            }
        }
        if let Some(v) = prefix {
            let (all, y) = (f64::from(v.count), f64::from(v.tagged_with(YOUNG)));
            let s = weight * c.prefix_weight * crowd_suspicion(all, y, c.min_accounts, c.prefix_cap);
            if s > 0.0 {
                let id = format!("prefix:{prefix_id}");
                parts.push((
                    s,
                    id.clone(),
                    format!(
                        "network prefix {id} shared by ~{all:.0} accounts, ~{y:.0} of them under {:.0} days old",
                        c.young_days
                    ),
                ));
            }
            let hoppers = v.tagged_with(HOPPING);
            if hopping && (c.pool_min..=c.pool_cap).contains(&hoppers) {
                let id = format!("pool:{prefix_id}");
                let s = c.pool_score * if r.org != 0 { 0.3 } else { 1.0 };
                parts.push((s, id.clone(), format!("this account hops across networks, and {id} is an exit that {hoppers} hopping accounts used this week (a proxy pool)")));
            }
        }
        if parts.is_empty() {
            return None;
        }
        // Independent pieces combine as a noisy-or; the strongest explains.
        let score = 1.0 - parts.iter().map(|p| 1.0 - p.0).product::<f32>();
        parts.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut labels = vec!["shared-infra".to_string()];
        for p in &parts {
            if !labels.contains(&p.1) {
                labels.push(p.1.clone());
            }
        }
        let reason = parts.iter().map(|p| p.2.as_str()).collect::<Vec<_>>().join("; ");
        Some(Found { score, labels, reason })
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
        let out = d.score(&Batch::of(&batch), &mut h);
        assert_eq!(out[1].score, 0.0, "two accounts are not a cluster");
        assert!(out[2].score > 0.0 && out[2].score < 0.2, "three are a weak card group: {:?}", out[2]);
        let last = out.last().unwrap();
        assert!(last.score >= 0.8, "{last:?}");
        assert!(last.labels.iter().any(|l| l.starts_with("card:")), "names the cluster");
        // State carries to the next batch: a 26th account scores at once.
        let out = d.score(&Batch::of(&[req(&mut h, "a25", "card-x", 1, None)]), &mut h);
        assert!(out[0].score >= 0.8);
    }

    #[test]
    fn a_company_card_and_a_cloud_egress_do_not() {
        let mut d: SharedInfra = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        // 40 staff on a corporate card, a couple of them new hires.
        let staff: Vec<Request> =
            (0..40).map(|i| req(&mut h, &format!("s{i}"), "corp", if i < 2 { 3 } else { 500 }, Some("acme"))).collect();
        assert!(d.score(&Batch::of(&staff), &mut h).iter().all(|s| s.score < 0.1));
        // 1,000 accounts, half new, behind one prefix: over the cap.
        let mut cloud = Vec::new();
        for i in 0..1000 {
            let mut r = req(&mut h, &format!("c{i}"), &format!("own-{i}"), if i % 2 == 0 { 1 } else { 300 }, None);
            r.ip_prefix = h.handle(Field::IpPrefix, "3.0.1.0/24");
            cloud.push(r);
        }
        let out = d.score(&Batch::of(&cloud), &mut h);
        assert!(out[999].score == 0.0, "{:?}", out[999]);
    }

    /// `n` accounts each sending `per` requests at `ts`, prefix and network
    /// drawn by `exit(account, request)`.
    fn hoppers(
        h: &mut MemHost,
        name: &str,
        n: usize,
        per: usize,
        exit: impl Fn(usize, usize) -> (String, u32),
    ) -> Vec<Request> {
        let mut v = Vec::new();
        for k in 0..per {
            for a in 0..n {
                let mut r = req(h, &format!("{name}{a}"), &format!("own-{name}{a}"), 400, None);
                r.ts_ms = T0 + (k * n + a) as i64 * 60_000;
                let (prefix, asn) = exit(a, k);
                r.ip_prefix = h.handle(Field::IpPrefix, &prefix);
                r.asn = Some(asn);
                v.push(r);
            }
        }
        v
    }

    #[test]
    fn accounts_hopping_through_one_proxy_pool_are_linked_weakly() {
        let mut d: SharedInfra = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        // 30 aged accounts, each request from another exit of a 40-prefix
        // pool spread over 8 home ISPs.
        let reqs = hoppers(&mut h, "p", 30, 20, |a, k| {
            let p = (a * 7 + k * 13) % 40;
            (format!("70.{p}.40.0/24"), 64_000 + (p % 8) as u32)
        });
        let out = d.score(&Batch::of(&reqs), &mut h);
        let late = &out[out.len() - 30..];
        assert!(late.iter().all(|s| s.labels.iter().any(|l| l.starts_with("pool:"))), "{:?}", late[0]);
        assert!(late.iter().all(|s| s.score > 0.05 && s.score < 0.5), "evidence, not a verdict: {:?}", late[0]);
    }

    #[test]
    fn phones_on_a_carrier_nat_do_not_look_like_a_pool() {
        let mut d: SharedInfra = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        // 30 phones, a new prefix of the carrier every request, one network.
        let reqs = hoppers(&mut h, "m", 30, 10, |a, k| (format!("100.{}.7.0/24", (a + k * 3) % 40), 21_928));
        let out = d.score(&Batch::of(&reqs), &mut h);
        assert!(out.iter().all(|s| s.score == 0.0), "{:?}", out.iter().find(|s| s.score > 0.0));
    }
}
