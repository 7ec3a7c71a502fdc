//! fanout: an operator's scheduler sends each prompt of its sweep to several
//! accounts within minutes, to collect several samples per prompt, and
//! spreads the sweep over its whole fleet, so each account meets new
//! partners from prompt to prompt. People send the same words at the same
//! time too, but differently: a popular prompt has other senders all week,
//! a class spans more than minutes, a team meets the same few partners
//! every time.
//!
//! Per prompt of at least `min_words` words (case, spacing and punctuation
//! ignored: a scheduler sends the same text, word for word and number for
//! number), two host window sets: who sent it in each five minutes of the
//! last day or so, and in each day of the last week. A prompt others
//! already sent (more than `max_group` accounts this week) is a popular one
//! and never judged. Otherwise an account's prompt is judged once, `settle_minutes` after it was
//! sent (a day by default, so that the prompt's other senders, if it is a
//! popular one, have shown up): if 2 to `max_group` accounts sent it within
//! `window_minutes` of it, and (nearly) nobody else in the week up to the
//! judging, it was a fan-out: an event for the account, with those
//! accounts as partners. Per account, host state keeps its prompts waiting
//! to be judged, its events, its partners (a HyperLogLog) and how many
//! partner meetings it had, so that distinct/meetings says whether the
//! partners keep changing.
//!
//! One event is a coincidence: it scores 0.1 with a `fanout:<prompt>`
//! label, a link for the campaign stage; `min_events` with changing
//! partners flag the account on its own.
//!
//! Memory: per prompt, two sets (about 170 bytes each with its host entry
//! while few send it; a prompt everyone sends, up to 300 five-minute
//! buckets of at most 16 senders each); per account, up to 320 bytes, forgotten after a
//! quiet week. Both within the host's state bounds, which evict the least
//! recently used prompts first.

use serde::Deserialize;
use vigil_sdk::batch_state::{BatchState, DAY_MS};
use vigil_sdk::hash::{key, tag};
use vigil_sdk::sets::Shape;
use vigil_sdk::sketch::HyperLogLog;
use vigil_sdk::{Batch, Detector, Host, Request, SetOp, SetView, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Senders of one prompt this close in time are a group.
    pub window_minutes: u32,
    /// More senders in a window is a crowd, not a fan-out.
    pub max_group: u32,
    /// A prompt is judged this long after it was sent (so that other
    /// senders, if any, have shown up).
    pub settle_minutes: u32,
    /// Shorter prompts ("hello", "why?") are too common to mean anything.
    pub min_words: usize,
    /// Events an account needs for a full score.
    pub min_events: u32,
    /// Accounts in an organisation (an evaluation team's pipeline) weigh this much.
    pub org_factor: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self { window_minutes: 30, max_group: 12, settle_minutes: 1440, min_words: 6, min_events: 3, org_factor: 0.3 }
    }
}

const BURST: u64 = tag("fanout/burst");
const AUDIENCE: u64 = tag("fanout/audience");
/// Who sent a prompt when: five-minute buckets, long enough to be read
/// when the prompt is judged (see `Config::burst`).
const FIVE_MINUTES: i64 = 5 * 60_000;
/// Who sent a prompt this week: daily buckets.
const WEEK: Shape = Shape::new(DAY_MS, 7);
const ACCOUNT: u64 = tag("fanout/account");
const MINUTE: u32 = 60_000;
/// The score of one fan-out: a link for the campaign stage, not a verdict.
const LINK: f64 = 0.1;
/// Prompts an account keeps waiting to be judged.
const PENDING: usize = 16;

/// One account's fan-out record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fan {
    /// (prompt fingerprint, time sent) waiting to be judged, oldest first.
    pub pending: Vec<(u64, i64)>,
    /// Prompts judged fan-outs.
    pub events: u32,
    /// Partner meetings over its events (a partner met twice counts twice).
    pub meetings: u32,
    /// Distinct partners.
    pub partners: HyperLogLog<5>,
    /// The latest event's prompt, to name it.
    pub last_event: u64,
}

impl Fan {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + 16 * self.pending.len());
        v.push(self.pending.len() as u8);
        for (fp, ts) in &self.pending {
            v.extend_from_slice(&fp.to_le_bytes());
            v.extend_from_slice(&ts.to_le_bytes());
        }
        v.extend_from_slice(&self.events.to_le_bytes());
        v.extend_from_slice(&self.meetings.to_le_bytes());
        v.extend_from_slice(&self.last_event.to_le_bytes());
        v.extend_from_slice(self.partners.as_bytes());
        v
    }

    fn decode(b: &[u8]) -> Self {
        let n = b.first().copied().unwrap_or(0) as usize;
        if n > PENDING || b.len() != 1 + 16 * n + 16 + HyperLogLog::<5>::BYTES {
            return Self::default();
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let pending = (0..n).map(|k| (u64_at(1 + 16 * k), u64_at(9 + 16 * k) as i64)).collect();
        let at = 1 + 16 * n;
        Fan {
            pending,
            events: u32_at(at),
            meetings: u32_at(at + 4),
            last_event: u64_at(at + 8),
            partners: HyperLogLog::from_bytes(&b[at + 16..]),
        }
    }

    /// Judges the prompt sent at `at`: `group` is who sent it within the
    /// window, if that was a fan-out. Either way it is no longer pending.
    /// Returns whether it was a fan-out event.
    fn judge(&mut self, fp: u64, at: i64, me: u64, group: Option<&[u64]>) -> bool {
        let waiting = self.pending.len();
        self.pending.retain(|e| *e != (fp, at));
        // Judged already (the account sent twice in one batch).
        if self.pending.len() == waiting {
            return false;
        }
        let Some(group) = group else { return false };
        let before = self.meetings;
        for &a in group.iter().filter(|&&a| a != me) {
            self.partners.add(a);
            self.meetings += 1;
        }
        if self.meetings > before {
            self.events += 1;
            self.last_event = fp;
        }
        self.meetings > before
    }

    /// Distinct partners over partner meetings: near 1 when every event
    /// brings new partners (a fleet), low when the same come back (a team).
    pub fn novelty(&self) -> f64 {
        if self.meetings == 0 { 0.0 } else { (self.partners.estimate() / f64::from(self.meetings)).min(1.0) }
    }
}

impl Config {
    /// The score of an account's record (before the organisation factor).
    pub fn score(&self, f: &Fan) -> f32 {
        // One shared prompt is a coincidence (a weak score: a link for the
        // campaign stage, not a verdict); `min_events` of them, each with
        // new partners, a pattern.
        let min = f64::from(self.min_events.max(2));
        let events = match f.events {
            0 => 0.0,
            1 => LINK,
            e => (((f64::from(e) - 1.0) / (min - 1.0)).min(1.0)).powi(2).max(LINK),
        };
        let novel = ((f.novelty() - 0.3) / 0.4).clamp(0.0, 1.0);
        (events * novel) as f32
    }

    fn window_ms(&self) -> i64 {
        i64::from(self.window_minutes) * i64::from(MINUTE)
    }

    fn settle_ms(&self) -> i64 {
        i64::from(self.settle_minutes) * i64::from(MINUTE)
    }

    /// The burst sets' shape: five-minute buckets reaching back from a
    /// judging to the window before the prompt.
    fn burst(&self) -> Shape {
        let minutes = self.settle_minutes + 2 * self.window_minutes + 10;
        Shape::new(FIVE_MINUTES, (minutes / 5).min(u32::from(u16::MAX)) as u16)
    }
}

pub struct Fanout {
    cfg: Config,
    state: BatchState<Fan>,
}

/// What one request asks of the sets: adds for its own prompt, then reads
/// for each of its account's prompts due to be judged.
struct Asks {
    /// Its own prompt, and where the add to its audience is.
    fp: Option<(u64, usize)>,
    /// (fingerprint, time sent, index of its first read op).
    judged: Vec<(u64, i64, usize)>,
}

impl Detector for Fanout {
    const DESCRIPTION: &'static str = "The same prompts sent by a few accounts within minutes, again and again with new partners (a scheduler's fan-out)";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        if cfg.window_minutes == 0 || cfg.window_minutes > 60 || cfg.settle_minutes < cfg.window_minutes {
            return Err("config: window_minutes must be 1..=60 and settle_minutes at least as long".into());
        }
        Ok(Self { cfg, state: BatchState::new(Fan::decode, Fan::encode) })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        let (Some(earliest), Some(latest)) = (batch.iter().map(|r| r.ts_ms).min(), batch.iter().map(|r| r.ts_ms).max())
        else {
            return Vec::new();
        };
        let keys: Vec<u64> = batch.iter().filter(|r| r.account != 0).map(|r| key(ACCOUNT, r.account)).collect();
        self.state.prefetch(host, &keys, earliest);
        // Every add and read of the batch in one host call.
        let mut ops: Vec<SetOp> = Vec::new();
        let text = batch.prompt_text();
        let asks: Vec<Asks> =
            batch.iter().enumerate().map(|(i, r)| self.asks(r, text.fingerprint(i), &mut ops)).collect();
        let views = host.sets_update(&ops);
        let c = &self.cfg;
        let out = batch
            .iter()
            .zip(&asks)
            .map(|(r, a)| {
                if r.account == 0 {
                    return Signal::none();
                }
                let fan = self.state.get(host, key(ACCOUNT, r.account), r.ts_ms);
                let mut new = Vec::new();
                for &(fp, sent, at) in &a.judged {
                    let g = views.get(at).and_then(|v| group(c, v, views.get(at + 1)));
                    if fan.judge(fp, sent, r.account, g) {
                        new.push(fp);
                    }
                }
                // A prompt many others sent this week is no fan-out: not
                // worth remembering.
                let popular = |at: usize| views.get(at).is_none_or(|v| v.count > c.max_group + 1);
                if let Some((fp, at)) = a.fp
                    && !popular(at)
                {
                    fan.pending.push((fp, r.ts_ms));
                    if fan.pending.len() > PENDING {
                        fan.pending.remove(0);
                    }
                }
                signal(c, fan, r, &new)
            })
            .collect();
        // Accounts quiet for a week are forgotten.
        self.state.flush(host, Some(latest.saturating_add(7 * DAY_MS)), latest);
        out
    }
}

impl Fanout {
    /// `prompt`: the request's prompt fingerprint and word count.
    fn asks(&self, r: &Request, prompt: Option<(u64, usize)>, ops: &mut Vec<SetOp>) -> Asks {
        let c = &self.cfg;
        let mut asks = Asks { fp: None, judged: Vec::new() };
        if r.account == 0 {
            return asks;
        }
        if let Some((fp, words)) = prompt
            && words >= c.min_words
        {
            asks.fp = Some((fp, ops.len() + 1));
            ops.push(c.burst().insert(key(BURST, fp), r.account, 0, r.ts_ms));
            ops.push(WEEK.add(key(AUDIENCE, fp), r.account, 0, r.ts_ms));
        }
        // The account's prompts due to be judged (the batch's accounts were
        // prefetched).
        let Some(fan) = self.state.cached(key(ACCOUNT, r.account)) else { return asks };
        for &(fp, ts) in &fan.pending {
            if r.ts_ms >= ts + c.settle_ms() {
                // Who sent it within the window, and who all week.
                asks.judged.push((fp, ts, ops.len()));
                ops.push(c.burst().read(key(BURST, fp), ts - c.window_ms(), ts + c.window_ms(), true));
                ops.push(WEEK.read(key(AUDIENCE, fp), r.ts_ms - WEEK.window_ms(), r.ts_ms, false));
            }
        }
        asks
    }
}

/// Who sent a prompt within its window, if that was a fan-out: a small
/// group (known exactly), and (nearly) nobody else all week.
fn group<'v>(c: &Config, burst: &'v SetView, audience: Option<&SetView>) -> Option<&'v [u64]> {
    let n = burst.members.len() as u32;
    let alone = audience.is_some_and(|a| a.count <= n + 1);
    (n >= 2 && n <= c.max_group && alone).then_some(burst.members.as_slice())
}

/// The account's signal; `new`: the prompts judged fan-outs on this
/// request, each named in a label (`fanout:<prompt>`), so that the
/// campaign stage links the accounts of each group.
fn signal(c: &Config, fan: &Fan, r: &Request, new: &[u64]) -> Signal {
    let s = c.score(fan) * if r.org != 0 { c.org_factor } else { 1.0 };
    if s <= 0.0 {
        return Signal::none();
    }
    let name = |fp: u64| format!("fanout:{:08x}", fp >> 32);
    let group = name(fan.last_event);
    let mut labels = vec!["fanout".to_string()];
    labels.extend(new.iter().map(|&fp| name(fp)));
    if new.is_empty() {
        labels.push(group.clone());
    }
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    Signal::new(
        s,
        &labels,
        format!(
            "{} prompts each sent within {} min by a few accounts and nobody else ({group} the latest); \
             {:.0} partners, {:.0}% of meetings with a new one: a scheduler fanning prompts out over a fleet",
            fan.events,
            c.window_minutes,
            fan.partners.estimate(),
            fan.novelty() * 100.0
        ),
    )
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(Fanout);

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sdk::Field;
    use vigil_sdk::testing::{MemHost, detector, request};

    const T0: i64 = 1_760_000_000_000;
    const MIN: i64 = 60_000;

    fn req(h: &mut MemHost, acct: &str, ts: i64, prompt: &str) -> Request {
        let mut r = request(ts);
        r.account = h.handle(Field::Account, acct);
        r.prompt = Some(prompt.to_string());
        r
    }

    /// Scores one request at a time, as a stream of batches of one.
    fn run(d: &mut Fanout, h: &mut MemHost, reqs: Vec<Request>) -> Vec<Signal> {
        reqs.into_iter().map(|r| d.score(&Batch::of(&[r]), h).pop().unwrap()).collect()
    }

    /// An account's highest score over its requests.
    fn peak(out: &[Signal], reqs_accounts: &[u64], acct: u64) -> f32 {
        out.iter().zip(reqs_accounts).filter(|(_, a)| **a == acct).map(|(s, _)| s.score).fold(0.0, f32::max)
    }

    #[test]
    fn a_fleet_fanning_prompts_out_with_new_partners_is_flagged() {
        let mut d: Fanout = detector();
        let mut h = MemHost::new();
        // 40 accounts; each prompt goes to 4 of them, drawn at random,
        // within 10 minutes; every account also asks an ordinary follow-up.
        let mut reqs = Vec::new();
        let mut x = 7u64;
        let mut groups = [0u32; 40];
        for p in 0..60i64 {
            let t = T0 + p * 20 * MIN;
            let mut group = Vec::new();
            while group.len() < 4 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let a = (x >> 33) % 40;
                if !group.contains(&a) {
                    group.push(a);
                }
            }
            for (k, g) in group.iter().enumerate() {
                groups[*g as usize] += 1;
                let k = k as i64;
                let a = format!("fleet-{g}");
                let prompt = format!("Explain concept {p} of field {} in depth please", p % 9);
                reqs.push(req(&mut h, &a, t + k * 3 * MIN, &prompt));
                reqs.push(req(&mut h, &a, t + k * 3 * MIN + MIN, "Can you give me an example of that?"));
            }
        }
        // The accounts keep sending: later requests are when earlier prompts
        // are judged.
        for i in 0..40 {
            reqs.push(req(
                &mut h,
                &format!("fleet-{i}"),
                T0 + 3 * DAY_MS + i * MIN,
                "And how would that change later?",
            ));
        }
        let accts: Vec<u64> = reqs.iter().map(|r| r.account).collect();
        let out = run(&mut d, &mut h, reqs);
        // Every account in 4 or more groups flags; most are.
        let peaks: Vec<f32> =
            (0..40).map(|i| peak(&out, &accts, h.handle(Field::Account, &format!("fleet-{i}")))).collect();
        for i in 0..40 {
            assert!(groups[i] < 4 || peaks[i] >= 0.5, "fleet-{i}: {} groups, peak {}", groups[i], peaks[i]);
        }
        assert!(groups.iter().filter(|g| **g >= 4).count() >= 28);
        assert!(out.iter().any(|s| s.labels.iter().any(|l| l.starts_with("fanout:"))));
    }

    #[test]
    fn a_team_with_the_same_partners_and_a_popular_prompt_are_not() {
        let mut d: Fanout = detector();
        let mut h = MemHost::new();
        // An evaluation team: the same 3 accounts send each benchmark item
        // within seconds, 100 items.
        let mut reqs = Vec::new();
        for i in 0..100i64 {
            for k in 0..3 {
                reqs.push(req(
                    &mut h,
                    &format!("eval-{k}"),
                    T0 + i * 20_000 + k * 1_000,
                    &format!("benchmark item {i} what is the capital"),
                ));
            }
        }
        // A popular prompt: 30 strangers in one afternoon, several of them
        // within minutes of each other.
        for u in 0..30i64 {
            reqs.push(req(
                &mut h,
                &format!("user-{u}"),
                T0 + 4 * 3_600_000 + u * 2 * MIN,
                "Write a poem about love and loss",
            ));
        }
        let out = run(&mut d, &mut h, reqs);
        assert!(out.iter().all(|s| s.score < 0.2), "{:?}", out.iter().map(|s| s.score).fold(0f32, f32::max));
    }

    #[test]
    fn a_class_asking_the_same_questions_together_is_not() {
        let mut d: Fanout = detector();
        let mut h = MemHost::new();
        // 10 students, 8 sessions: each session the same 3 questions, by
        // whoever attends (most of them) within the hour.
        let mut reqs = Vec::new();
        for s in 0..8i64 {
            for st in 0..10i64 {
                if (st + s) % 4 == 0 {
                    continue;
                }
                for q in 0..3i64 {
                    let t = T0 + s * 2 * DAY_MS + st * 4 * MIN + q * MIN;
                    reqs.push(req(
                        &mut h,
                        &format!("student-{st}"),
                        t,
                        &format!("Homework unit {s} question {q} solve the quadratic"),
                    ));
                }
            }
        }
        let out = run(&mut d, &mut h, reqs);
        assert!(out.iter().all(|s| s.score < 0.2), "{:?}", out.iter().map(|s| s.score).fold(0f32, f32::max));
    }

    #[test]
    fn a_prompt_is_judged_once_however_many_requests_a_batch_has() {
        let mut d: Fanout = detector();
        let mut h = MemHost::new();
        let p = "Explain concept 7 of field 3 in depth please";
        let reqs = (0..3).map(|k| req(&mut h, &format!("f{k}"), T0 + k * MIN, p)).collect();
        run(&mut d, &mut h, reqs);
        // A day later each account sends twice in one batch: one event each.
        let later: Vec<Request> = (0..6)
            .map(|i| req(&mut h, &format!("f{}", i % 3), T0 + 2 * DAY_MS + i * MIN, "And what about the next one?"))
            .collect();
        let out = d.score(&Batch::of(&later), &mut h);
        assert!(out.iter().all(|s| s.score > 0.0 && s.score <= LINK as f32 + 1e-6), "{out:?}");
    }

    #[test]
    fn state_round_trips() {
        let pending = vec![(5, T0), (9, T0 + 1)];
        let mut f = Fan { pending, events: 3, meetings: 7, last_event: 5, ..Fan::default() };
        f.partners.add(42);
        assert_eq!(Fan::decode(&f.encode()), f);
        assert_eq!(Fan::decode(&[1, 2]), Fan::default());
    }
}
