//! Campaign verdicts: accounts linked by shared evidence, judged together.
//!
//! A detector names what an account shares in its signal's labels
//! (`fanout:<prompt>`, `pool:<prefix>`, `card:<id>`, `template:<band>`).
//! Each such label, given with a score of at least `link_min`, links the
//! account to every other account that carried it within the window: the
//! accounts fall into clusters (union-find). A cluster is *raised* when its
//! evidence is independent: at least two pieces, each either a kind of link
//! that ties a fair share of the cluster (three accounts and a tenth, say)
//! through several labels (several cards, prompts or prefixes) or through
//! one label many accounts share (a script two hundred accounts keep
//! sending), or several of its accounts flagged on their own. Then every member, the
//! quiet ones too, gets a `campaign` signal naming the cluster and its
//! evidence, so an analyst sees why an account that did little was
//! blocked. One innocent kind of sharing (one NAT, one popular prompt, one
//! family card) is one piece of evidence, and never raises a cluster alone;
//! a label shared by more than `crowd` accounts (a carrier's NAT, a viral
//! prompt) links nobody.
//!
//! Memory: at most `max_accounts` accounts (about 120 bytes each) and
//! `max_labels` labels (about 100 bytes, plus 12 per member, at most
//! `crowd` members); what does not fit waits for the next rebuild, which
//! also forgets links older than the window (counted in
//! `vigil_campaign_links_dropped_total`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Campaigns as Config, Scoring};
use crate::plugin::manifest::Mode;
use crate::score::combine::{Decision, SignalOut, Verdict};

/// The plugin name the campaign signal goes under.
pub const NAME: &str = crate::plugin::files::RESERVED_NAMES[0];
/// Kinds of link at most (a bit each).
pub const MAX_KINDS: usize = 8;

/// One account in the link graph.
#[derive(Debug, Clone)]
struct Account {
    name: Arc<str>,
    /// Union-find parent (itself for a root).
    parent: u32,
    /// Kinds of link it has (bit per kind).
    kinds: u8,
    /// When it was last flagged on its own, if within the window.
    flagged_ms: Option<i64>,
    /// Order of first appearance: a cluster is named after its oldest member.
    seq: u64,
}

/// What a cluster holds (kept at its root).
#[derive(Debug, Clone, Default)]
struct Tally {
    size: u32,
    /// Accounts with each kind of link.
    per_kind: [u32; MAX_KINDS],
    /// Labels of each kind (one shared thing is one label: one NAT, one
    /// card, one prompt).
    labels: [u32; MAX_KINDS],
    /// Accounts flagged on their own.
    flagged: u32,
    /// The oldest member (lowest `seq`).
    oldest: u32,
}

/// One label: the accounts that carried it, with when they last did.
#[derive(Debug, Clone)]
struct Label {
    kind: u8,
    members: Vec<(u32, i64)>,
    last_ms: i64,
    /// More than `crowd` accounts carried it: it links nobody.
    crowd: bool,
}

/// What one verdict adds to the link graph: the labels it carried and
/// whether it was flagged on its own. Cluster nodes share these.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    /// The account.
    pub account: String,
    /// Event time of the request.
    pub ts_ms: i64,
    /// Labels of a kind the graph links on.
    pub labels: Vec<String>,
    /// Flagged on its own.
    pub flagged: bool,
}

/// A raised cluster, as the report draws it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cluster {
    /// `campaign:<id>`, as the members' signals name it.
    pub id: String,
    /// Its accounts.
    pub accounts: Vec<String>,
    /// The labels that link them: (label, members among `accounts`).
    pub links: Vec<(String, Vec<String>)>,
    /// Accounts flagged on their own.
    pub flagged: Vec<String>,
    /// The campaign signal's score for its members.
    pub score: f64,
    /// What raised it.
    pub evidence: String,
}

/// The link graph and its clusters. See the module documentation.
pub struct Campaigns {
    cfg: Config,
    accounts: Vec<Account>,
    tallies: Vec<Tally>,
    by_name: HashMap<Arc<str>, u32>,
    labels: HashMap<Box<str>, Label>,
    next_seq: u64,
    newest_ms: i64,
    next_rebuild_ms: i64,
    dropped: u64,
}

impl Campaigns {
    /// An empty graph under `cfg` (validated by `Config::validate`).
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            accounts: Vec::new(),
            tallies: Vec::new(),
            by_name: HashMap::new(),
            labels: HashMap::new(),
            next_seq: 0,
            newest_ms: i64::MIN,
            next_rebuild_ms: i64::MIN,
            dropped: 0,
        }
    }

    /// Links, accounts and labels that did not fit, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Accounts and labels held.
    pub fn len(&self) -> (usize, usize) {
        (self.accounts.len(), self.labels.len())
    }

    fn window_ms(&self) -> i64 {
        self.cfg.window_hours as i64 * 3_600_000
    }

    fn kind_of(&self, label: &str) -> Option<u8> {
        let (kind, id) = label.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        self.cfg.kinds.iter().position(|k| k == kind).map(|k| k as u8)
    }

    /// Takes a batch's verdicts in order (with their requests' event times):
    /// records the links each one carries, then adds the campaign signal to
    /// it if its account is in a raised cluster, and recombines its score.
    /// Returns the evidence the batch added, for a cluster to share.
    pub fn apply(&mut self, verdicts: &mut [Verdict], times: &[i64], scoring: &Scoring) -> Vec<Evidence> {
        let mut added = Vec::new();
        if !self.cfg.enabled {
            return added;
        }
        for (v, &ts) in verdicts.iter_mut().zip(times) {
            added.extend(self.observe(v, ts));
            if let Some(sig) = self.signal(&v.account) {
                if sig.mode == Mode::Enforce {
                    let w = self.cfg.weight;
                    v.score = round6(1.0 - (1.0 - v.score) * (1.0 - (w * sig.score).clamp(0.0, 1.0)));
                    v.decision = Decision::from_score(v.score, scoring);
                }
                v.signals.push(sig);
            }
        }
        added
    }

    /// Records what `v` links (before any campaign signal is added to it).
    fn observe(&mut self, v: &Verdict, ts: i64) -> Option<Evidence> {
        let e = self.evidence_of(v, ts);
        match &e {
            Some(e) => self.take(e),
            None => self.advance(ts),
        }
        e
    }

    /// What `v` adds to the graph, if anything: its links and whether it
    /// was flagged on its own.
    fn evidence_of(&self, v: &Verdict, ts: i64) -> Option<Evidence> {
        let labels: Vec<String> = v
            .signals
            .iter()
            .filter(|s| s.error.is_none() && s.mode == Mode::Enforce && s.score >= self.cfg.link_min)
            .flat_map(|s| s.labels.iter())
            .filter(|l| self.kind_of(l).is_some())
            .cloned()
            .collect();
        let flagged = v.decision != Decision::Allow;
        (flagged || !labels.is_empty()).then(|| Evidence { account: v.account.clone(), ts_ms: ts, labels, flagged })
    }

    fn advance(&mut self, ts: i64) {
        if ts > self.newest_ms {
            self.newest_ms = ts;
            if ts >= self.next_rebuild_ms {
                self.rebuild(ts);
            }
        }
    }

    /// Takes in evidence seen elsewhere (another cluster node's accounts).
    /// Links are a union: taking the same evidence twice changes nothing.
    pub fn take(&mut self, e: &Evidence) {
        if !self.cfg.enabled {
            return;
        }
        self.advance(e.ts_ms);
        let mut me = None;
        for l in &e.labels {
            if let Some(kind) = self.kind_of(l) {
                if me.is_none() {
                    me = self.account(&e.account);
                }
                match me {
                    Some(a) => self.link(a, l, kind, e.ts_ms),
                    None => self.dropped += 1,
                }
            }
        }
        if e.flagged {
            // Flagged on its own: counts if it is (or becomes) linked.
            if let Some(&a) = self.by_name.get(e.account.as_str()) {
                self.flag(a, e.ts_ms);
            }
        }
    }

    /// The account's index, added if there is room.
    fn account(&mut self, name: &str) -> Option<u32> {
        if let Some(&a) = self.by_name.get(name) {
            return Some(a);
        }
        if self.accounts.len() >= self.cfg.max_accounts {
            return None;
        }
        let a = self.accounts.len() as u32;
        let name: Arc<str> = name.into();
        self.accounts.push(Account { name: name.clone(), parent: a, kinds: 0, flagged_ms: None, seq: self.next_seq });
        self.tallies.push(Tally { size: 1, oldest: a, ..Tally::default() });
        self.next_seq += 1;
        self.by_name.insert(name, a);
        Some(a)
    }

    fn link(&mut self, a: u32, label: &str, kind: u8, ts: i64) {
        let crowd = self.cfg.crowd;
        let full = self.labels.len() >= self.cfg.max_labels;
        let l = match self.labels.get_mut(label) {
            Some(l) => l,
            None if full => {
                self.dropped += 1;
                return;
            }
            None => self.labels.entry(label.into()).or_insert(Label {
                kind,
                members: Vec::new(),
                last_ms: ts,
                crowd: false,
            }),
        };
        l.last_ms = l.last_ms.max(ts);
        if l.crowd {
            return;
        }
        let first = l.members.first().map(|m| m.0);
        let n = l.members.len();
        match l.members.iter_mut().find(|m| m.0 == a) {
            Some(m) => m.1 = m.1.max(ts),
            None if n >= crowd => {
                // A crowd: it stops linking now, and its links are undone at
                // the next rebuild.
                l.crowd = true;
                l.members = Vec::new();
                return;
            }
            None => l.members.push((a, ts)),
        }
        self.add_kind(a, kind);
        match first {
            Some(b) => self.union(a, b),
            None => {
                let r = self.find(a);
                self.tallies[r as usize].labels[kind as usize] += 1;
            }
        }
    }

    fn add_kind(&mut self, a: u32, kind: u8) {
        let bit = 1u8 << kind;
        if self.accounts[a as usize].kinds & bit == 0 {
            self.accounts[a as usize].kinds |= bit;
            let r = self.find(a);
            self.tallies[r as usize].per_kind[kind as usize] += 1;
        }
    }

    fn flag(&mut self, a: u32, ts: i64) {
        let was = self.accounts[a as usize].flagged_ms.replace(ts);
        if was.is_none() {
            let r = self.find(a);
            self.tallies[r as usize].flagged += 1;
        }
    }

    fn find(&mut self, mut a: u32) -> u32 {
        while self.accounts[a as usize].parent != a {
            let p = self.accounts[a as usize].parent;
            // Path halving keeps the trees flat.
            self.accounts[a as usize].parent = self.accounts[p as usize].parent;
            a = p;
        }
        a
    }

    fn union(&mut self, a: u32, b: u32) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.tallies[ra as usize].size < self.tallies[rb as usize].size {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.accounts[rb as usize].parent = ra;
        let t = std::mem::take(&mut self.tallies[rb as usize]);
        let seq = |s: &Self, x: u32| s.accounts[x as usize].seq;
        let into = &mut self.tallies[ra as usize];
        into.size += t.size;
        into.flagged += t.flagged;
        for (k, n) in into.per_kind.iter_mut().zip(t.per_kind) {
            *k += n;
        }
        for (k, n) in into.labels.iter_mut().zip(t.labels) {
            *k += n;
        }
        let (o1, o2) = (into.oldest, t.oldest);
        self.tallies[ra as usize].oldest = if seq(self, o2) < seq(self, o1) { o2 } else { o1 };
    }

    /// The independent pieces of evidence a cluster has: the kinds of link
    /// that tie enough of it, and (as one more) enough accounts flagged on
    /// their own. Names them for the reason.
    fn evidence(&self, t: &Tally) -> (u32, String) {
        let c = &self.cfg;
        let need = (c.min_kind_accounts as f64).max((c.min_kind_share * f64::from(t.size)).ceil()) as u32;
        let mut n = 0;
        let mut parts = Vec::new();
        for (k, &count) in t.per_kind.iter().enumerate().take(c.kinds.len()) {
            if count >= need && (t.labels[k] as usize >= c.min_kind_labels || count as usize >= c.one_label_accounts) {
                n += 1;
                parts.push(format!("{} links {count} through {} {}s", c.kinds[k], t.labels[k], c.kinds[k]));
            }
        }
        if t.flagged as usize >= c.min_flagged {
            n += 1;
            parts.push(format!("{} flagged on their own", t.flagged));
        }
        (n, parts.join(", "))
    }

    /// The campaign signal for `account`, if its cluster is raised.
    fn signal(&mut self, account: &str) -> Option<SignalOut> {
        let &a = self.by_name.get(account)?;
        let r = self.find(a);
        let t = &self.tallies[r as usize];
        if (t.size as usize) < self.cfg.min_accounts {
            return None;
        }
        let (n, evidence) = self.evidence(t);
        if n < 2 {
            return None;
        }
        let id = cluster_id(&self.accounts[t.oldest as usize].name);
        let score = round6(1.0 - 0.5f64.powi(n as i32));
        Some(SignalOut {
            plugin: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            digest: "host".into(),
            mode: if self.cfg.monitor { Mode::Monitor } else { Mode::Enforce },
            score,
            labels: vec![NAME.to_string(), id.clone()],
            reason: format!("member of {id}, {} linked accounts: {evidence}", t.size),
            error: None,
        })
    }

    /// Forgets links older than the window and rebuilds the clusters from
    /// the rest (compacting the accounts).
    fn rebuild(&mut self, now: i64) {
        let cutoff = now.saturating_sub(self.window_ms());
        self.next_rebuild_ms = now.saturating_add(self.cfg.rebuild_minutes as i64 * 60_000);
        self.labels.retain(|_, l| {
            l.members.retain(|m| m.1 >= cutoff);
            l.last_ms >= cutoff && (l.crowd || !l.members.is_empty())
        });
        // Keep the accounts still linked, in their old order.
        let mut keep = vec![u32::MAX; self.accounts.len()];
        for l in self.labels.values() {
            for m in &l.members {
                keep[m.0 as usize] = 0;
            }
        }
        let old = std::mem::take(&mut self.accounts);
        self.by_name.clear();
        for (i, mut acct) in old.into_iter().enumerate() {
            if keep[i] == 0 {
                let n = self.accounts.len() as u32;
                keep[i] = n;
                acct.parent = n;
                acct.kinds = 0;
                acct.flagged_ms = acct.flagged_ms.filter(|&f| f >= cutoff);
                self.by_name.insert(acct.name.clone(), n);
                self.accounts.push(acct);
            }
        }
        self.tallies = (0..self.accounts.len() as u32)
            .map(|a| Tally {
                size: 1,
                flagged: u32::from(self.accounts[a as usize].flagged_ms.is_some()),
                oldest: a,
                ..Tally::default()
            })
            .collect();
        let mut labels = std::mem::take(&mut self.labels);
        for l in labels.values_mut() {
            for m in &mut l.members {
                m.0 = keep[m.0 as usize];
            }
            let Some(&(first, _)) = l.members.first() else { continue };
            let r = self.find(first);
            self.tallies[r as usize].labels[l.kind as usize] += 1;
            for &(a, _) in &l.members {
                self.add_kind(a, l.kind);
                self.union(a, first);
            }
        }
        self.labels = labels;
    }

    /// The raised clusters, largest first, with the labels that link them
    /// (for reports).
    pub fn clusters(&mut self) -> Vec<Cluster> {
        let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
        for a in 0..self.accounts.len() as u32 {
            let r = self.find(a);
            members.entry(r).or_default().push(a);
        }
        let mut out = Vec::new();
        for (r, accts) in members {
            let t = &self.tallies[r as usize];
            if (t.size as usize) < self.cfg.min_accounts {
                continue;
            }
            let (n, evidence) = self.evidence(t);
            if n < 2 {
                continue;
            }
            let name = |a: u32| self.accounts[a as usize].name.to_string();
            let mut links: Vec<(String, Vec<String>)> = Vec::new();
            for (label, l) in &self.labels {
                if l.members.first().is_some_and(|m| accts.binary_search(&m.0).is_ok()) {
                    links.push((label.to_string(), l.members.iter().map(|m| name(m.0)).collect()));
                }
            }
            links.sort();
            out.push(Cluster {
                id: cluster_id(&self.accounts[t.oldest as usize].name),
                accounts: accts.iter().map(|&a| name(a)).collect(),
                links,
                flagged: accts
                    .iter()
                    .filter(|&&a| self.accounts[a as usize].flagged_ms.is_some())
                    .map(|&a| name(a))
                    .collect(),
                score: round6(1.0 - 0.5f64.powi(n as i32)),
                evidence,
            });
        }
        out.sort_by(|a, b| b.accounts.len().cmp(&a.accounts.len()).then(a.id.cmp(&b.id)));
        out
    }
}

/// `campaign:<8 hex digits>` from the oldest member's name: stable while
/// the cluster grows.
fn cluster_id(oldest: &str) -> String {
    // FNV-1a: a short, stable name, not a secret.
    let h = oldest.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{NAME}:{:08x}", h >> 32)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn verdict(account: &str, labels: &[(&str, f64)], flagged: bool) -> Verdict {
        Verdict {
            id: "r".into(),
            account: account.into(),
            score: if flagged { 0.6 } else { 0.1 },
            decision: if flagged { Decision::Flag } else { Decision::Allow },
            signals: labels
                .iter()
                .map(|(l, s)| SignalOut {
                    plugin: "p".into(),
                    version: "1".into(),
                    digest: "d".into(),
                    mode: Mode::Enforce,
                    score: *s,
                    labels: vec![l.to_string()],
                    reason: String::new(),
                    error: None,
                })
                .collect(),
        }
    }

    fn run(c: &mut Campaigns, vs: Vec<(Verdict, i64)>) -> Vec<Verdict> {
        let (mut v, t): (Vec<Verdict>, Vec<i64>) = vs.into_iter().unzip();
        c.apply(&mut v, &t, &Scoring::default());
        v
    }

    fn campaign_score(v: &Verdict) -> Option<f64> {
        v.signals.iter().find(|s| &*s.plugin == NAME).map(|s| s.score)
    }

    #[test]
    fn two_kinds_of_link_raise_every_member_the_quiet_ones_too() {
        let mut c = Campaigns::new(Config::default());
        let mut vs = Vec::new();
        // 12 accounts: a card per group of 4, and a pool prefix per pair of
        // groups' neighbours; none flagged on its own.
        for i in 0..12 {
            let card = format!("card:{}", i / 4);
            let pool = format!("pool:{}", (i + 2) / 4);
            vs.push((verdict(&format!("a{i}"), &[(&card, 0.1), (&pool, 0.1)], false), i as i64));
        }
        run(&mut c, vs);
        let out = run(&mut c, vec![(verdict("a5", &[], false), 20)]);
        let s = campaign_score(&out[0]).expect("raised");
        assert_eq!(s, 0.75);
        assert!(out[0].decision != Decision::Allow, "{:?}", out[0]);
        let r = &out[0].signals.last().unwrap().reason;
        assert!(
            r.contains("12 linked accounts")
                && r.contains("card links 12 through 3 cards")
                && r.contains("pool links 12"),
            "{r}"
        );
        let clusters = c.clusters();
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].accounts.len(), 12);
        assert!(clusters[0].links.iter().any(|(l, m)| l == "card:0" && m.len() == 4));
    }

    #[test]
    fn one_kind_of_sharing_alone_never_raises() {
        let mut c = Campaigns::new(Config::default());
        // 200 students behind two NAT prefixes of a campus, all linked.
        let vs = (0..200)
            .map(|i| {
                (verdict(&format!("s{i}"), &[("pool:campus", 0.2), (&format!("pool:nat{}", i % 2), 0.2)], false), i)
            })
            .collect();
        let out = run(&mut c, vs);
        assert!(out.iter().all(|v| campaign_score(v).is_none()));
    }

    #[test]
    fn one_card_and_one_shared_prompt_are_not_two_pieces_of_evidence() {
        let mut c = Campaigns::new(Config::default());
        // A family of three on one card; one of them and two strangers sent
        // the same prompt at the same time.
        let mut vs: Vec<(Verdict, i64)> =
            (0..3).map(|i| (verdict(&format!("h{i}"), &[("card:home", 0.1)], false), i)).collect();
        for a in ["h0", "x1", "x2"] {
            vs.push((verdict(a, &[("fanout:p", 0.1)], false), 10));
        }
        let out = run(&mut c, vs);
        assert!(out.iter().all(|v| campaign_score(v).is_none()));
    }

    #[test]
    fn a_small_second_kind_in_a_big_cluster_is_not_evidence() {
        let mut c = Campaigns::new(Config::default());
        // 100 accounts on two prefixes; 6 of them also share family cards.
        let mut vs: Vec<(Verdict, i64)> = (0..100)
            .map(|i| (verdict(&format!("m{i}"), &[("pool:x", 0.2), (&format!("pool:{}", i % 2), 0.2)], false), i))
            .collect();
        for i in 0..6 {
            vs.push((verdict(&format!("m{i}"), &[(&format!("card:family{}", i / 3), 0.2)], false), 200));
        }
        let out = run(&mut c, vs);
        assert!(out.iter().all(|v| campaign_score(v).is_none()));
    }

    #[test]
    fn several_accounts_flagged_on_their_own_count_as_evidence() {
        let mut c = Campaigns::new(Config::default());
        // 10 accounts linked by fan-outs, 5 of them flagged by the detector.
        let vs = (0..10)
            .map(|i| (verdict(&format!("f{i}"), &[(&format!("fanout:{}", i / 3), 0.3), ("fanout:all", 0.3)], i < 5), i))
            .collect();
        let out = run(&mut c, vs);
        let quiet = run(&mut c, vec![(verdict("f9", &[], false), 20)]);
        assert_eq!(campaign_score(&quiet[0]), Some(0.75), "{:?}", out.last());
    }

    #[test]
    fn crowds_weak_and_monitor_signals_link_nobody() {
        let mut c = Campaigns::new(Config { crowd: 10, ..Config::default() });
        let mut vs: Vec<(Verdict, i64)> = (0..11)
            .map(|i| (verdict(&format!("c{i}"), &[("pool:carrier", 0.2), ("card:x", 0.01)], false), i))
            .collect();
        let mut mon = verdict("m", &[("card:y", 0.9)], false);
        mon.signals[0].mode = Mode::Monitor;
        vs.push((mon, 12));
        run(&mut c, vs);
        // The crowd label stopped linking at its 11th account; the weak
        // card link and the monitor-mode one never linked.
        let (_, labels) = c.len();
        assert_eq!(labels, 1);
        c.rebuild(100);
        assert_eq!(c.len().0, 0, "a crowd's links are undone at the rebuild");
    }

    #[test]
    fn links_older_than_the_window_are_forgotten() {
        let mut c = Campaigns::new(Config::default());
        let vs = (0..12)
            .map(|i| {
                (
                    verdict(
                        &format!("a{i}"),
                        &[(&format!("card:{}", i / 4), 0.1), (&format!("pool:{}", i % 2), 0.1)],
                        false,
                    ),
                    0,
                )
            })
            .collect();
        run(&mut c, vs);
        assert!(campaign_score(&run(&mut c, vec![(verdict("a1", &[], false), H)])[0]).is_some());
        // Eight days on, the cluster is gone.
        let later = run(&mut c, vec![(verdict("a1", &[], false), 8 * 24 * H)]);
        assert!(campaign_score(&later[0]).is_none());
        assert_eq!(c.len(), (0, 0));
    }

    #[test]
    fn bounded_accounts_and_labels() {
        let mut c = Campaigns::new(Config { max_accounts: 5, max_labels: 3, ..Config::default() });
        let vs = (0..20).map(|i| (verdict(&format!("a{i}"), &[(&format!("card:{}", i % 4), 0.5)], false), 0)).collect();
        run(&mut c, vs);
        assert!(c.len().0 <= 5 && c.len().1 <= 3, "{:?}", c.len());
        assert!(c.dropped() > 0);
    }
}
