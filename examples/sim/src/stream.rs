//! The request stream: every account's activity as an event process on
//! simulated time, merged through one priority queue, so records come out in
//! time order with memory bounded by the number of accounts, not requests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use rand::SeedableRng;
use serde::Serialize;

use crate::population::{Account, Hop, Persona, Population, Role, lognormal};
use crate::scenario::{DAY_MS, HOUR_MS, Scenario, Style};
use crate::text::{self, R};

/// A request record (docs/contract.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Request {
    pub id: String,
    pub ts_ms: i64,
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub api_key: String,
    pub ip: String,
    pub asn: u32,
    pub user_agent: String,
    pub model: &'static str,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<&'static str>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub max_tokens: u32,
    pub account_created_ms: i64,
    pub payment_fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub turn: u32,
}

#[derive(Default, Clone)]
struct Session {
    conversation: u64,
    turn: u32,
    turns_left: u32,
    /// `Hop::PerSession`: which address this session uses.
    ip: u32,
    /// A class session: the class's slot whose homework it asks.
    homework: Option<u32>,
}

/// A fan-out campaign's prompt that the scheduler is still handing out.
struct Group {
    prompt: String,
    opened_ms: i64,
    /// Accounts it still goes to.
    left: usize,
}

/// Evaluation runs: every 6 hours, 20 benchmark items 20 s apart.
const EVAL_EVERY_MS: i64 = 6 * HOUR_MS;
const EVAL_ITEMS: u32 = 20;
const EVAL_GAP_MS: i64 = 20_000;

pub struct Simulator<'a> {
    scenario: &'a Scenario,
    pop: &'a Population,
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    sessions: Vec<Session>,
    /// When each pivoting campaign switches to the new model.
    pivot_ms: Vec<i64>,
    release_ms: i64,
    /// Per campaign, the fan-out prompt still open.
    groups: Vec<Option<Group>>,
    /// Per class member, the next class slot it may attend.
    class_next: Vec<u32>,
    rng: R,
    seq: u64,
}

fn mimic(s: &Scenario, a: &Account) -> bool {
    matches!(a.role, Role::Campaign(ci) if s.campaigns[ci].styles.contains(&Style::Mimic))
}

/// Relative activity by local hour: low at night, high in the day.
fn diurnal(local_hour: i64) -> f64 {
    match local_hour {
        0..=5 => 0.08,
        6..=7 => 0.4,
        8..=11 => 1.0,
        12..=13 => 0.8,
        14..=18 => 1.0,
        19..=21 => 0.75,
        _ => 0.3,
    }
}
const DIURNAL_MEAN: f64 = 0.6;
const MEAN_SESSION_TURNS: f64 = 2.5;

impl<'a> Simulator<'a> {
    pub fn new(scenario: &'a Scenario, pop: &'a Population) -> Self {
        // Stream randomness is separate from the population's, so the same
        // seed gives the same accounts whatever is read of the stream.
        let mut rng = R::seed_from_u64(scenario.seed ^ 0x5eed_57ea_u64);
        let release_ms = scenario.start_ms + (scenario.release_day * DAY_MS as f64) as i64;
        let pivot_ms = scenario.campaigns.iter().map(|_| release_ms + rng.gen_range(HOUR_MS..12 * HOUR_MS)).collect();
        let mut sim = Simulator {
            scenario,
            pop,
            queue: BinaryHeap::with_capacity(pop.accounts.len()),
            sessions: vec![Session::default(); pop.accounts.len()],
            pivot_ms,
            release_ms,
            groups: scenario.campaigns.iter().map(|_| None).collect(),
            class_next: vec![0; pop.accounts.len()],
            rng,
            seq: 0,
        };
        for i in 0..pop.accounts.len() {
            let a = &pop.accounts[i];
            let first = match a.role {
                _ if mimic(scenario, a) => {
                    sim.start_session(i);
                    sim.next_session(a, a.active_from)
                }
                Role::Benign(Persona::Evaluation) => {
                    let org = a.eval_org.unwrap_or(0) as i64;
                    a.active_from + org * 20 * 60_000 + sim.rng.gen_range(0..3_000)
                }
                Role::Campaign(_) | Role::Benign(Persona::Labelling) => {
                    // Load balancing: phases spread across the interval.
                    let interval = (DAY_MS as f64 / a.rate_per_day.max(1e-9)) as i64;
                    a.active_from + sim.rng.gen_range(0..interval.max(1))
                }
                _ => {
                    sim.start_session(i);
                    sim.next_session(a, a.active_from)
                }
            };
            if first <= a.active_to {
                sim.queue.push(Reverse((first, i as u32)));
            }
        }
        sim
    }

    /// Accounts with a pending event: never more than the population.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    fn next_session(&mut self, a: &Account, after: i64) -> i64 {
        // Thinning of a Poisson process whose rate follows the local hour.
        let peak = a.rate_per_day / MEAN_SESSION_TURNS / DIURNAL_MEAN;
        let mut t = after;
        loop {
            let u: f64 = self.rng.gen_range(1e-12..1.0);
            t += (-u.ln() / peak * DAY_MS as f64) as i64 + 1;
            if t > a.active_to {
                return t;
            }
            let hour = (t / HOUR_MS + a.tz_hours).rem_euclid(24);
            if self.rng.r#gen::<f64>() < diurnal(hour) {
                return t;
            }
        }
    }

    fn start_session(&mut self, i: usize) {
        // Geometric session length with mean MEAN_SESSION_TURNS.
        let mut left = 0;
        while left < 12 && self.rng.gen_bool(1.0 - 1.0 / MEAN_SESSION_TURNS) {
            left += 1;
        }
        let conversation = self.rng.r#gen::<u64>() | 1;
        let pop = self.pop;
        let a = &pop.accounts[i];
        let ip = if a.hop == Hop::PerSession { self.rng.gen_range(0..a.ips.len()) as u32 } else { 0 };
        self.sessions[i] = Session { conversation, turn: 1, turns_left: left, ip, homework: None };
    }

    /// The opening prompt of a mimic: its campaign's content. A fan-out
    /// campaign's scheduler hands the open prompt to this account too, until
    /// it has gone to its number of accounts or been open its minutes.
    fn campaign_prompt(&mut self, ci: usize, ts: i64) -> String {
        let c = &self.scenario.campaigns[ci];
        let fam = text::family(c.family).expect("known family");
        let paraphrase = c.styles.contains(&Style::Paraphrased);
        if !c.styles.contains(&Style::FanOut) {
            return fam.prompt(&mut self.rng, paraphrase);
        }
        let window = (c.fanout_minutes * 60_000.0) as i64;
        let open = self.groups[ci].as_ref().is_some_and(|g| g.left > 0 && ts - g.opened_ms <= window);
        if !open {
            let prompt = fam.prompt(&mut self.rng, paraphrase);
            let left = self.rng.gen_range(2..=c.fanout_max.max(2));
            self.groups[ci] = Some(Group { prompt, opened_ms: ts, left });
        }
        let g = self.groups[ci].as_mut().expect("opened above");
        g.left -= 1;
        g.prompt.clone()
    }

    /// A person's request fields (turn, conversation, model, sizes), for
    /// benign users and the campaign accounts that mimic them.
    fn human(&mut self, r: &mut Request, i: usize, ts: i64, developer: bool) {
        let rng = &mut self.rng;
        let s = &self.sessions[i];
        r.turn = s.turn.max(1);
        r.conversation_id = Some(format!("conv-{:x}", s.conversation));
        if developer && rng.gen_bool(0.3) {
            r.system_prompt = Some("You are a helpful coding assistant.");
        }
        let days_since = (ts - self.release_ms) as f64 / DAY_MS as f64;
        if days_since > 0.0 && rng.gen_bool((days_since * 0.1).min(0.4)) {
            r.model = "m-next";
        } else if rng.gen_bool(0.15) {
            r.model = "m-small";
        }
        r.max_tokens = [1024, 2048, 4096][rng.gen_range(0..3)];
        r.completion_tokens = if rng.gen_bool(self.scenario.benign.max_tokens_hit_share) {
            r.max_tokens
        } else {
            ((350.0 * lognormal(rng, 0.8)) as u32).clamp(5, r.max_tokens)
        };
    }

    fn make(&mut self, i: usize, ts: i64) -> Request {
        let pop = self.pop;
        let a = &pop.accounts[i];
        let rng = &mut self.rng;
        self.seq += 1;
        let (ip, asn) = match a.hop {
            Hop::PerRequest => a.ips[rng.gen_range(0..a.ips.len())].clone(),
            Hop::PerSession => a.ips[self.sessions[i].ip as usize].clone(),
        };
        let mut r = Request {
            id: format!("req-{:x}", self.seq),
            ts_ms: ts,
            account: a.id.clone(),
            org: a.org.clone(),
            api_key: a.api_key.clone(),
            ip,
            asn,
            user_agent: a.user_agent.to_string(),
            model: "m-large",
            prompt: String::new(),
            system_prompt: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            max_tokens: 0,
            account_created_ms: a.created_ms,
            payment_fingerprint: a.card.clone(),
            conversation_id: None,
            turn: 1,
        };
        match a.role {
            Role::Campaign(ci) if mimic(self.scenario, a) => {
                r.prompt = if self.sessions[i].turn <= 1 {
                    self.campaign_prompt(ci, ts)
                } else {
                    text::follow_up(&mut self.rng, self.scenario.benign.vocab())
                };
                let developer = SDK_AGENTS.iter().any(|s| a.user_agent.starts_with(s));
                self.human(&mut r, i, ts, developer);
            }
            Role::Campaign(ci) => {
                let c = &self.scenario.campaigns[ci];
                let fam = text::family(c.family).expect("known family");
                r.prompt = fam.prompt(rng, c.styles.contains(&Style::Paraphrased));
                if c.styles.contains(&Style::Pivot) && ts >= self.pivot_ms[ci] {
                    r.model = "m-next";
                }
                // Output-heavy: long answers, often cut at the ceiling.
                r.max_tokens = if rng.gen_bool(0.5) { 8192 } else { 16384 };
                r.completion_tokens = if rng.gen_bool(0.4) {
                    r.max_tokens
                } else {
                    (r.max_tokens as f64 * rng.gen_range(0.6..0.98)) as u32
                };
                r.conversation_id = Some(format!("conv-{:x}", rng.r#gen::<u64>()));
            }
            Role::Benign(Persona::Labelling) => {
                r.prompt = text::labelling(rng);
                r.model = "m-small";
                r.max_tokens = 5;
                r.completion_tokens = 1;
            }
            Role::Benign(Persona::Evaluation) => {
                r.prompt = text::benchmark(a.eval_org.unwrap_or(0), self.sessions[i].turn as usize);
                r.max_tokens = 1024;
                r.completion_tokens = ((200.0 * lognormal(rng, 0.5)) as u32).clamp(5, 1024);
            }
            Role::Benign(p) => {
                let vocab = self.scenario.benign.vocab();
                let s = &self.sessions[i];
                let sharing = &self.scenario.benign.sharing;
                r.prompt = if let (Some(slot), Some(class)) = (s.homework, a.class) {
                    text::homework(class, slot, s.turn - 1)
                } else if s.turn > 1 {
                    text::follow_up(rng, vocab)
                } else if sharing.popular_prompt_share > 0.0 && rng.gen_bool(sharing.popular_prompt_share) {
                    text::popular(rng).to_string()
                } else {
                    match p {
                        Persona::Student | Persona::CampusStudent => text::student(rng, vocab),
                        Persona::Developer | Persona::CloudUser => text::developer(rng, vocab),
                        _ => text::casual(rng, vocab),
                    }
                };
                self.human(&mut r, i, ts, matches!(p, Persona::Developer | Persona::CloudUser));
            }
        }
        // Earlier turns ride along as context.
        r.prompt_tokens = (r.prompt.len() / 4) as u32 + 400 * (r.turn - 1);
        r
    }

    fn schedule(&mut self, i: usize, now: i64) {
        let pop = self.pop;
        let a = &pop.accounts[i];
        let next = match a.role {
            _ if mimic(self.scenario, a) => self.next_human(i, now),
            Role::Benign(Persona::Evaluation) => self.next_eval(i, now),
            Role::Campaign(_) | Role::Benign(Persona::Labelling) => {
                let interval = DAY_MS as f64 / a.rate_per_day.max(1e-9);
                now + (interval * self.rng.gen_range(0.8..1.2)) as i64 + 1
            }
            Role::Benign(_) => self.next_human(i, now),
        };
        if next <= a.active_to {
            self.queue.push(Reverse((next, i as u32)));
        }
    }

    /// A person's next request: the next turn of this session, or a new
    /// session (a class session, if the account's class meets first).
    fn next_human(&mut self, i: usize, now: i64) -> i64 {
        let pop = self.pop;
        let a = &pop.accounts[i];
        let s = &mut self.sessions[i];
        if s.turns_left > 0 {
            s.turns_left -= 1;
            s.turn += 1;
            return now + self.rng.gen_range(20_000..240_000);
        }
        self.start_session(i);
        let next = self.next_session(a, now);
        let Some(class) = a.class else { return next };
        let slots = &pop.classes[class as usize].slots;
        while let Some(&t) = slots.get(self.class_next[i] as usize) {
            if t >= next {
                break;
            }
            self.class_next[i] += 1;
            // Most students come to most sessions and ask one to three of
            // that session's questions.
            if t >= now && self.rng.gen_bool(0.7) {
                let s = &mut self.sessions[i];
                s.homework = Some(self.class_next[i] - 1);
                s.turns_left = self.rng.gen_range(0..3);
                return t + self.rng.gen_range(0..45 * 60_000);
            }
        }
        next
    }

    /// An evaluation account's next benchmark item, or the next run.
    fn next_eval(&mut self, i: usize, now: i64) -> i64 {
        let pop = self.pop;
        let a = &pop.accounts[i];
        let s = &mut self.sessions[i];
        s.turn += 1;
        if s.turn < EVAL_ITEMS {
            return now + EVAL_GAP_MS + self.rng.gen_range(0..2_000);
        }
        s.turn = 0;
        let base = a.active_from + a.eval_org.unwrap_or(0) as i64 * 20 * 60_000;
        let run = (now - base).div_euclid(EVAL_EVERY_MS) + 1;
        base + run * EVAL_EVERY_MS + self.rng.gen_range(0..3_000)
    }
}

/// User agents of SDKs (a developer's traffic).
const SDK_AGENTS: &[&str] = &["openai-python", "anthropic-typescript", "python-httpx", "curl"];

impl Iterator for Simulator<'_> {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        let Reverse((ts, i)) = self.queue.pop()?;
        let i = i as usize;
        let r = self.make(i, ts);
        self.schedule(i, ts);
        Some(r)
    }
}
