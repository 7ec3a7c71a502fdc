//! template-fleet: campaigns send the same script from many accounts, with
//! slots filled in (a problem, a repository, a question). A prompt's words
//! are normalised (case, punctuation; anything with a digit masked), and
//! two kinds of key come of them, each with a host window set per key of
//! the accounts that used it this week:
//!
//! - **Near-duplicates, for young fleets.** Word pairs, a 16-value MinHash
//!   signature in 8 bands of 2: prompts sharing most of their word pairs
//!   (Jaccard 0.7: 99.5%) share a band key, unrelated ones (0.05: 2%) not.
//!   Accounts are tagged young (days old). A key crowded with young
//!   accounts is a fleet; the score grows with the young share and the
//!   account's focus (its share of recent prompts on fleet keys). A popular
//!   benign phrasing is crowded too, but by accounts of every age.
//! - **Scripts, for fleets of any age.** A conversation's opening prompt is
//!   cut into word 4-grams and a fixed third of them (by hash) are its
//!   script keys, so two openings of one script share the keys of its
//!   fixed wording whatever fills the slots. Accounts are tagged young and
//!   repeat (the account used the key before, as a per-account Bloom
//!   filter remembers). A script key is one that at least
//!   `script_repeaters` accounts use again and again (most of its users
//!   are repeat users), that no more than `common_share` of the accounts
//!   opening conversations this week use (else it is a common phrasing),
//!   and that is not a young fleet's (those the first kind sees). An
//!   opening matching scripts in two places, or an account's second
//!   opening on scripts this week (one shared word sequence is ordinary
//!   language), gets a weak score and a `script:<key>` label: a link for
//!   the campaign stage. An account whose openings are nearly all
//!   scripts (`convict_share` of at least `convict_openings` this week) is
//!   scored on its own: a person's openings wander, a sweep's do not.
//!
//! Memory (host state): per key, about 60 bytes a day it is used while at
//! most 16 accounts use it that day, else 128 bytes per tag, at most 7
//! days; per account a 264-byte Bloom filter and five sliding counters.
//! Within the host's state bounds, which evict the least recently used keys
//! (mostly ones a single prompt used).

use serde::Deserialize;
use vigil_sdk::batch_state::{BatchState, DAY_MS};
use vigil_sdk::hash::{key, mix, tag};
use vigil_sdk::sets::{SetViewExt, Shape, crowd_suspicion};
use vigil_sdk::sketch::{Recent, minhash};
use vigil_sdk::text::TextFeatures;
use vigil_sdk::{Batch, CounterOp, Detector, Host, Request, RequestExt, SetView, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub young_days: f64,
    /// A template needs this many distinct accounts to count as a fleet.
    pub min_accounts: f64,
    /// Window for an account's focus (share of its prompts on a script).
    pub focus_window_ms: u32,
    /// A script: at least this many repeat users...
    pub script_repeaters: u32,
    /// ...who are at least this share of its users...
    pub script_repeat_share: f64,
    /// ...and its users at most this share of the accounts opening
    /// conversations this week (but never fewer than `common_floor`).
    pub common_share: f64,
    pub common_floor: u32,
    /// The score of an opening on a script (a link).
    pub link_score: f32,
    /// An account with at least `convict_openings` openings on scripts this
    /// week, `convict_share` of its openings or more, scores up to
    /// `convict_score`.
    pub convict_openings: u32,
    pub convict_share: f64,
    pub convict_score: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            young_days: 14.0,
            min_accounts: 15.0,
            focus_window_ms: 7 * 86_400_000,
            script_repeaters: 5,
            script_repeat_share: 0.5,
            common_share: 0.03,
            common_floor: 30,
            link_score: 0.1,
            convict_openings: 4,
            convict_share: 0.6,
            convict_score: 0.65,
        }
    }
}

const BAND: u64 = tag("template-fleet/band");
const GRAM: u64 = tag("template-fleet/gram");
const OPENERS: u64 = tag("template-fleet/openers");
const MEMORY: u64 = tag("template-fleet/memory");
const SENT: u64 = tag("template-fleet/sent");
const ON_FLEET: u64 = tag("template-fleet/on-script");
const OPENINGS: u64 = tag("template-fleet/openings");
const SCRIPTED: u64 = tag("template-fleet/scripted");
/// A request counts as "on a fleet script" from this crowd suspicion.
const ON_FLEET_FROM: f32 = 0.3;
const BANDS: usize = 8;
/// Script keys per opening at most (a long prompt has many 4-grams).
const MAX_GRAMS: usize = 8;
const YOUNG: u8 = 1;
const REPEAT: u8 = 2;
/// Keys, and who opens conversations: a week, by day.
const WEEK: Shape = Shape::new(DAY_MS, 7);
/// The per-account memory of script keys: two epochs of half a week.
const EPOCH_MS: i64 = 7 * DAY_MS / 2;

type Memory = Recent<128>;

pub struct TemplateFleet {
    cfg: Config,
    /// The parsed prompt's word hashes, digits masked.
    masked: Vec<u64>,
    /// A prompt's 4-gram keys before the cut to `MAX_GRAMS` (reused).
    scratch: Vec<u64>,
    memory: BatchState<Memory>,
}

/// One request's keys.
struct Keys {
    bands: Option<[u64; BANDS]>,
    /// Script keys, for a conversation's opening only.
    grams: Grams,
}

/// At most `MAX_GRAMS` script keys, held inline: a request's keys cost no
/// allocation.
#[derive(Clone, Copy, Default)]
struct Grams {
    keys: [u64; MAX_GRAMS],
    len: usize,
}

impl std::ops::Deref for Grams {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.keys[..self.len]
    }
}

/// Stands in for the views of an opening's absent script keys.
static NO_VIEW: SetView = SetView { count: 0, tagged: (0, 0, 0, 0), active_buckets: 0, members: Vec::new() };

/// What one request's keys say.
#[derive(Clone, Copy, Default)]
struct Found {
    /// The young-fleet suspicion of its best band, with (id, accounts, young).
    fleet: Option<(f32, u64, u32, u32)>,
    /// Its script key with the most repeat users: (id, accounts, repeaters).
    script: Option<(u64, u32, u32)>,
    /// How many of its keys are script keys.
    script_keys: usize,
    /// Whether it is an opening (it has script keys).
    opening: bool,
    /// Where its counters are in the batch's counter call.
    at: usize,
}

impl TemplateFleet {
    /// Fills `self.masked` with request i's prompt words, words with a
    /// digit masked; false for a prompt under five words.
    fn mask(&mut self, text: &TextFeatures, i: usize) -> bool {
        let masked = tag("#");
        self.masked.clear();
        self.masked
            .extend(text.words(i).iter().enumerate().map(|(w, &h)| if text.has_digit(i, w) { masked } else { h }));
        // A closing 0, as `Words` ends a text: it is part of the last
        // 4-gram, so the keys stay those of earlier versions.
        self.masked.push(0);
        self.masked.len() >= 6
    }

    fn parse(&mut self, prompt: &str) -> bool {
        self.mask(&TextFeatures::compute([Some(prompt)]), 0)
    }

    /// The band keys of a prompt (none for one too short to tell).
    pub fn buckets(&mut self, prompt: &str) -> Option<[u64; BANDS]> {
        self.parse(prompt).then(|| self.bands())
    }

    fn bands(&self) -> [u64; BANDS] {
        // minhash mixes each feature, so the pair needs only combining.
        let sig = minhash::<{ 2 * BANDS }>(
            self.masked.windows(2).filter(|p| p[0] != 0 && p[1] != 0).map(|p| p[0] ^ p[1].rotate_left(17)),
        );
        std::array::from_fn(|b| key(BAND ^ b as u64, sig[2 * b] ^ sig[2 * b + 1].rotate_left(29)))
    }

    /// The script keys of a prompt: a fixed third of its word 4-grams
    /// (none for one under six words).
    pub fn grams(&mut self, prompt: &str) -> Vec<u64> {
        if self.parse(prompt) { self.gram_keys().to_vec() } else { Vec::new() }
    }

    /// The smallest `MAX_GRAMS` of the kept 4-gram keys.
    fn gram_keys(&mut self) -> Grams {
        let keys = &mut self.scratch;
        keys.clear();
        keys.extend(
            self.masked
                .windows(4)
                .map(|g| mix(g[0] ^ g[1].rotate_left(13) ^ g[2].rotate_left(29) ^ g[3].rotate_left(43)))
                .filter(|h| h % 3 == 0)
                .map(|h| key(GRAM, h)),
        );
        keys.sort_unstable();
        keys.dedup();
        let mut g = Grams { len: keys.len().min(MAX_GRAMS), ..Grams::default() };
        g.keys[..g.len].copy_from_slice(&keys[..g.len]);
        g
    }

    /// Request i's keys; `text` has the batch's prompt features.
    fn keys(&mut self, r: &Request, text: &TextFeatures, i: usize) -> Keys {
        let none = Keys { bands: None, grams: Grams::default() };
        if r.prompt.is_none() || r.account == 0 || !self.mask(text, i) {
            return none;
        }
        // Scripts only open conversations; the follow-ups everyone types
        // ("can you give me an example") are no script.
        let opening = r.turn.unwrap_or(1) <= 1;
        Keys { bands: Some(self.bands()), grams: if opening { self.gram_keys() } else { Grams::default() } }
    }
}

impl Detector for TemplateFleet {
    const DESCRIPTION: &'static str = "Prompt scripts shared across accounts: fleets of young accounts on one template \
         (MinHash bands), and accounts of any age that keep opening conversations with a script (word 4-grams)";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        if cfg.script_repeaters < 2 || !(0.0..=1.0).contains(&cfg.common_share) {
            return Err("config: script_repeaters must be at least 2 and common_share in [0, 1]".into());
        }
        Ok(Self {
            cfg,
            masked: Vec::new(),
            scratch: Vec::new(),
            memory: BatchState::new(Memory::decode, Memory::encode),
        })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        let text = batch.prompt_text();
        let keys: Vec<Keys> = batch.iter().enumerate().map(|(i, r)| self.keys(r, text, i)).collect();
        let (Some(earliest), Some(latest)) = (batch.iter().map(|r| r.ts_ms).min(), batch.iter().map(|r| r.ts_ms).max())
        else {
            return Vec::new();
        };
        let openers: Vec<u64> =
            batch.iter().zip(&keys).filter(|(_, k)| !k.grams.is_empty()).map(|(r, _)| key(MEMORY, r.account)).collect();
        self.memory.prefetch(host, &openers, earliest);
        let c = &self.cfg;
        // Every request's keys, added and read in one host call: its bands;
        // for an opening, who opens conversations at all, then each script key.
        let mut ops = Vec::new();
        for (r, k) in batch.iter().zip(&keys) {
            let young = u8::from(r.young(c.young_days)) * YOUNG;
            for &b in k.bands.iter().flatten() {
                ops.push(WEEK.add(b, r.account, young, r.ts_ms));
            }
            if k.grams.is_empty() {
                continue;
            }
            let memory = self.memory.get(host, key(MEMORY, r.account), r.ts_ms);
            ops.push(WEEK.put(OPENERS, r.account, 0, r.ts_ms));
            for &g in k.grams.iter() {
                let repeat = u8::from(memory.seen_then_add(g, r.ts_ms, EPOCH_MS)) * REPEAT;
                ops.push(WEEK.add(g, r.account, young | repeat, r.ts_ms));
            }
        }
        self.memory.flush(host, Some(latest.saturating_add(2 * EPOCH_MS)), latest);
        // Who opened conversations this week, read once for the batch.
        ops.push(WEEK.read(OPENERS, latest - WEEK.window_ms(), latest, false));
        let views = host.sets_update(&ops);
        let openers = views.last().map_or(0, |v| v.count);
        let mut views = views[..views.len().saturating_sub(1)].iter();
        let mut counters = Vec::new();
        let found: Vec<Option<Found>> = batch
            .iter()
            .zip(&keys)
            .map(|(r, k)| {
                let bands = k.bands?;
                let mut f = Found { at: counters.len(), opening: !k.grams.is_empty(), ..Found::default() };
                for b in bands {
                    let v = views.next()?;
                    let s =
                        crowd_suspicion(f64::from(v.count), f64::from(v.tagged_with(YOUNG)), c.min_accounts, f64::MAX);
                    if s > 0.0 && f.fleet.is_none_or(|best| s > best.0) {
                        f.fleet = Some((s, b >> 44, v.count, v.tagged_with(YOUNG)));
                    }
                }
                if f.opening {
                    views.next()?; // the add to OPENERS

                    let mut grams = [&NO_VIEW; MAX_GRAMS];
                    for g in grams.iter_mut().take(k.grams.len()) {
                        *g = views.next()?;
                    }
                    (f.script, f.script_keys) = self.script(&k.grams, &grams[..k.grams.len()], openers);
                }
                let on_fleet = f.fleet.is_some_and(|b| b.0 >= ON_FLEET_FROM);
                let mut count = |t: u64, d: bool| {
                    counters.push(CounterOp {
                        key: key(t, r.account),
                        now_ms: r.ts_ms,
                        window_ms: c.focus_window_ms,
                        delta: u32::from(d),
                    })
                };
                count(SENT, true);
                count(ON_FLEET, on_fleet);
                count(OPENINGS, f.opening);
                count(SCRIPTED, f.script.is_some());
                Some(f)
            })
            .collect();
        let totals = host.counter_add(&counters);
        batch
            .iter()
            .zip(found)
            .map(|(r, f)| {
                let Some(f) = f else { return Signal::none() };
                let Some(&[sent, on, openings, scripted]) = totals.get(f.at..f.at + 4) else { return Signal::none() };
                self.signal(r, f, [sent, on, openings, scripted])
            })
            .collect()
    }
}

impl TemplateFleet {
    /// The opening's best script key, and how many of its keys are script keys.
    fn script(&self, grams: &[u64], views: &[&SetView], openers: u32) -> (Option<(u64, u32, u32)>, usize) {
        let c = &self.cfg;
        let cap = (c.common_share * f64::from(openers)).max(f64::from(c.common_floor));
        let mut best: Option<(u64, u32, u32)> = None;
        let mut matched = 0;
        for (g, v) in grams.iter().zip(views) {
            let (all, young, rep) = (v.count, v.tagged_with(YOUNG), v.tagged_with(REPEAT));
            let script = rep >= c.script_repeaters
                && f64::from(rep) >= c.script_repeat_share * f64::from(all)
                && f64::from(all) <= cap
                && 2 * young < all;
            if script {
                matched += 1;
                if best.is_none_or(|b| rep > b.2) {
                    best = Some((g >> 44, all, rep));
                }
            }
        }
        (best, matched)
    }
}

impl TemplateFleet {
    fn signal(&self, r: &Request, f: Found, [sent, on, openings, scripted]: [u64; 4]) -> Signal {
        let c = &self.cfg;
        let org = if r.org != 0 { 0.3 } else { 1.0 };
        let mut parts: Vec<(f32, String, String)> = Vec::new();
        if let Some((s, id, all, y)) = f.fleet {
            let focus = if on >= 2 { ((on as f32 / sent as f32 - 0.3) / 0.4).clamp(0.0, 1.0) } else { 0.0 };
            let weight = if r.young(c.young_days) { 1.0 } else { 0.5 } * org;
            if s * focus * weight > 0.0 {
                let cluster = format!("template:{id:05x}");
                let reason = format!(
                    "prompt matches {cluster}, sent by ~{all} accounts, ~{y} of them under {:.0} days old; \
                     {on} of this account's {sent} recent prompts follow a fleet script",
                    c.young_days
                );
                parts.push((s * focus * weight, cluster, reason));
            }
        }
        // One shared word sequence ("what is the result") is ordinary
        // language: a link takes an opening matching scripts in two places
        // (or in the one place a short prompt has), or two openings on
        // scripts this week.
        if let Some((id, all, rep)) = f.script
            && (f.script_keys >= 2 || scripted >= 2)
        {
            let share = scripted as f64 / openings.max(1) as f64;
            let convict = if scripted >= u64::from(c.convict_openings) {
                ((share - c.convict_share) / (1.0 - c.convict_share).max(1e-9)).clamp(0.0, 1.0) as f32
            } else {
                0.0
            };
            let s = (c.link_score + (c.convict_score - c.link_score).max(0.0) * convict) * org;
            let cluster = format!("script:{id:05x}");
            let reason = format!(
                "{scripted} of this account's {openings} openings this week follow scripts that few accounts use, \
                 again and again; this one {cluster}: ~{all} accounts, {rep} of them repeat users"
            );
            parts.push((s, cluster, reason));
        }
        if parts.is_empty() {
            return Signal::none();
        }
        let score = 1.0 - parts.iter().map(|p| 1.0 - p.0).product::<f32>();
        let mut labels = vec!["template-fleet"];
        for p in &parts {
            if !labels.contains(&p.1.as_str()) {
                labels.push(&p.1);
            }
        }
        let reason = parts.iter().map(|p| p.2.as_str()).collect::<Vec<_>>().join("; ");
        Signal::new(score, &labels, reason)
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
        let out = d.score(&Batch::of(&batch), &mut h);
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
        d.score(&Batch::of(&fleet), &mut h);
        // A new user asks one fleet-like question among ordinary ones.
        let mut mine = vec![req(&mut h, "me", script(7), 1)];
        for q in ["What is the capital of Peru?", "Suggest a name for my cat please", "How tall is Everest in feet?"] {
            mine.push(req(&mut h, "me", q.to_string(), 1));
        }
        assert!(d.score(&Batch::of(&mine), &mut h).iter().all(|s| s.score == 0.0));
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
        let out = d.score(&Batch::of(&batch), &mut h);
        assert!(out.iter().all(|s| s.score < 0.2), "{:?}", out.iter().map(|s| s.score).fold(0.0f32, f32::max));
    }

    #[test]
    fn masking_keeps_slot_numbers_from_splitting_a_template() {
        let mut d: TemplateFleet = vigil_sdk::testing::detector();
        let a = "Classify ticket 48213 from user 77 as billing, bug or question, then explain why.";
        let b = "Classify ticket 1002 from user 5 as billing, bug or question, then explain why.";
        assert_eq!(d.buckets(a), d.buckets(b));
        assert!(!d.grams(a).is_empty());
        assert_eq!(d.grams(a), d.grams(b));
        assert_eq!(d.buckets("hi"), None);
        assert_eq!(d.grams("hi"), Vec::<u64>::new());
    }
}
