//! template-fleet: campaigns send the same script from many accounts, with
//! slots filled in (a problem, a repository, a question). The prompt's
//! words are normalised (case, punctuation; anything with a digit masked)
//! and shingled into word pairs; a 16-value MinHash signature in 8 bands of
//! 2 is the locality-sensitive key: prompts sharing most of their shingles
//! (Jaccard 0.7: 99.5%) share a band bucket, unrelated ones (0.05: 2%) not.
//! Host state keeps, per bucket, the distinct accounts and the young ones.
//! A bucket crowded with days-old accounts is a template fleet; a popular
//! benign phrasing ("write a poem about...") is crowded too, but by
//! accounts of every age, and scores near zero. An account is scored by
//! its focus too: a fleet member sends the script again and again, while a
//! user whose one question happens to overlap a script's slot does not.

use serde::Deserialize;
use vigil_sdk::batch_state::{BatchState, DAY_MS};
use vigil_sdk::hash::{key, tag};
use vigil_sdk::sketch::{Crowd, minhash};
use vigil_sdk::text::Words;
use vigil_sdk::{Detector, Host, Request, RequestExt, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub young_days: f64,
    /// A template needs this many distinct accounts to count as a fleet.
    pub min_accounts: f64,
    /// Window for an account's focus (share of its requests on a script).
    pub focus_window_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { young_days: 14.0, min_accounts: 15.0, focus_window_ms: 7 * 86_400_000 }
    }
}

const BAND: u64 = tag("template-fleet/band");
const SENT: u64 = tag("template-fleet/sent");
const ON_SCRIPT: u64 = tag("template-fleet/on-script");
/// A request counts as "on a script" from this crowd suspicion.
const ON_SCRIPT_FROM: f32 = 0.3;
const BANDS: usize = 8;

pub struct TemplateFleet {
    cfg: Config,
    words: Words,
    /// Per-word hashes (digits masked), reused across requests.
    shingles: Vec<u64>,
    state: BatchState<Crowd>,
}

impl TemplateFleet {
    /// The band buckets of a prompt (none for one too short to tell).
    pub fn buckets(&mut self, prompt: &str) -> Option<[u64; BANDS]> {
        self.words.parse(prompt);
        let masked = tag("#");
        let n = self.words.len();
        if n < 6 {
            return None;
        }
        let shingles = &mut self.shingles;
        shingles.clear();
        let words = &self.words;
        shingles.extend((0..n).map(|i| if words.has_digit(i) { masked } else { words.hashes()[i] }));
        // minhash mixes each feature, so the pair needs only combining.
        let sig = minhash::<{ 2 * BANDS }>(
            shingles.windows(2).filter(|p| p[0] != 0 && p[1] != 0).map(|p| p[0] ^ p[1].rotate_left(17)),
        );
        Some(std::array::from_fn(|b| key(BAND ^ b as u64, sig[2 * b] ^ sig[2 * b + 1].rotate_left(29))))
    }
}

impl Detector for TemplateFleet {
    const DESCRIPTION: &'static str =
        "Near-duplicate prompt templates shared by many young accounts (MinHash bands, distinct counts)";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        Ok(Self {
            cfg,
            words: Words::new(),
            shingles: Vec::new(),
            state: BatchState::new(Crowd::decode, Crowd::encode),
        })
    }

    fn score(&mut self, batch: &[Request], host: &mut dyn Host) -> Vec<Signal> {
        // Every request's buckets first, so the crowds they name are read
        // from the host in one call.
        let items: Vec<(&Request, Option<[u64; BANDS]>)> = batch
            .iter()
            .map(|r| match r.prompt.as_deref().filter(|_| r.account != 0) {
                Some(p) => (r, self.buckets(p)),
                None => (r, None),
            })
            .collect();
        let c = &self.cfg;
        // Per request with a usable prompt: its best (crowd suspicion,
        // cluster id, accounts, young accounts), and where its focus
        // counters are in the batch's counter call.
        let mut ops = Vec::new();
        let keys = |i: &(&Request, Option<[u64; BANDS]>), k: &mut Vec<u64>| k.extend(i.1.iter().flatten());
        // Crowds quiet for 30 days are forgotten.
        let found = self.state.for_batch(
            host,
            &items,
            |i| i.0.ts_ms,
            keys,
            30 * DAY_MS,
            |state, host, &(r, buckets)| {
                let buckets = buckets?;
                let young = r.young(c.young_days);
                let mut best: Option<(f32, u64, f64, f64)> = None;
                for bucket in buckets {
                    let crowd = state.update(host, bucket, r.ts_ms, |c| c.add(r.account, young));
                    let s = crowd.suspicion(c.min_accounts, f64::MAX);
                    if s > 0.0 && best.is_none_or(|b| s > b.0) {
                        let (all, y) = crowd.counts();
                        best = Some((s, bucket >> 44, all, y));
                    }
                }
                let on_script = best.is_some_and(|b| b.0 >= ON_SCRIPT_FROM);
                let at = ops.len();
                for (t, d) in [(SENT, 1), (ON_SCRIPT, u32::from(on_script))] {
                    ops.push(vigil_sdk::CounterOp {
                        key: key(t, r.account),
                        now_ms: r.ts_ms,
                        window_ms: c.focus_window_ms,
                        delta: d,
                    });
                }
                Some((best, at))
            },
        );
        let totals = host.counter_add(&ops);
        batch
            .iter()
            .zip(found)
            .map(|(r, f)| {
                let Some((Some((s, id, all, y)), at)) = f else { return Signal::none() };
                let (Some(&sent), Some(&on)) = (totals.get(at), totals.get(at + 1)) else { return Signal::none() };
                let focus = if on >= 2 { ((on as f32 / sent as f32 - 0.3) / 0.4).clamp(0.0, 1.0) } else { 0.0 };
                let weight = if r.young(c.young_days) { 1.0 } else { 0.5 } * if r.org != 0 { 0.3 } else { 1.0 };
                if s * focus * weight <= 0.0 {
                    return Signal::none();
                }
                let cluster = format!("template:{id:05x}");
                Signal::new(
                    s * focus * weight,
                    &["template-fleet", &cluster],
                    format!(
                        "prompt matches {cluster}, sent by ~{all:.0} accounts, ~{y:.0} of them under {:.0} days old; \
                         {on} of this account's {sent} recent requests follow a fleet script",
                        c.young_days
                    ),
                )
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(TemplateFleet);

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::Field;
    use vigil_sdk::testing::{MemHost, request};

    const T0: i64 = 1_760_000_000_000;

    fn req(h: &mut MemHost, acct: &str, prompt: String, age_days: i64) -> Request {
        let mut r = request(T0);
        r.account = h.handle(Field::Account, acct);
        r.prompt = Some(prompt);
        r.account_created_ms = Some(T0 - age_days * 86_400_000);
        r
    }

    #[test]
    fn a_script_shared_by_new_accounts_is_a_fleet() {
        let mut d: TemplateFleet = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        let tasks = ["fix the login bug", "add caching to the API", "speed up CSV import", "port the deploy script"];
        // 40 new accounts, each sending the script three times.
        let batch: Vec<Request> = (0..120)
            .map(|i| {
                let p = format!(
                    "You are an autonomous coding agent. Repository: org/repo-{i}. Task: {}. Tools: read_file, \
                     write_file, run_tests. Plan the change, then output the complete patch.",
                    tasks[i % 4]
                );
                req(&mut h, &format!("a{}", i % 40), p, 1)
            })
            .collect();
        let out = d.score(&batch, &mut h);
        let last = out.last().unwrap();
        assert!(last.score >= 0.7, "{last:?}");
        assert!(last.labels.iter().any(|l| l.starts_with("template:")));
    }

    #[test]
    fn one_question_that_overlaps_a_script_is_not_focus() {
        let mut d: TemplateFleet = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        let script = |i: usize| {
            format!(
                "Solve the following problem. Think it through and give the final answer. Problem: integrate x^{i} sin x"
            )
        };
        let fleet: Vec<Request> = (0..90).map(|i| req(&mut h, &format!("f{}", i % 30), script(i), 1)).collect();
        d.score(&fleet, &mut h);
        // A new user asks one fleet-like question among ordinary ones.
        let mut mine = vec![req(&mut h, "me", script(7), 1)];
        for q in ["What is the capital of Peru?", "Suggest a name for my cat please", "How tall is Everest in feet?"] {
            mine.push(req(&mut h, "me", q.to_string(), 1));
        }
        assert!(d.score(&mine, &mut h).iter().all(|s| s.score == 0.0));
    }

    #[test]
    fn a_popular_phrasing_across_all_ages_is_not() {
        let mut d: TemplateFleet = vigil_sdk::testing::detector();
        let mut h = MemHost::new();
        let topics = ["autumn", "the sea", "cats", "jazz", "rain", "trains", "coffee", "winter"];
        let batch: Vec<Request> = (0..400)
            .map(|i| {
                let age = if i % 12 == 0 { 2 } else { 200 + i as i64 };
                req(&mut h, &format!("u{i}"), format!("Write a short poem about {} for my friend.", topics[i % 8]), age)
            })
            .collect();
        let out = d.score(&batch, &mut h);
        assert!(out.iter().all(|s| s.score < 0.2), "{:?}", out.iter().map(|s| s.score).fold(0.0f32, f32::max));
    }

    #[test]
    fn masking_keeps_slot_numbers_from_splitting_a_template() {
        let mut d: TemplateFleet = vigil_sdk::testing::detector();
        let a = d.buckets("Classify ticket 48213 from user 77 as billing, bug or question, then explain why.");
        let b = d.buckets("Classify ticket 1002 from user 5 as billing, bug or question, then explain why.");
        assert_eq!(a, b);
        assert_eq!(d.buckets("hi"), None);
    }
}
