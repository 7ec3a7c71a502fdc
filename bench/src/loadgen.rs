//! Inputs. `Gen` is load, not ground truth: a Rust port of
//! examples/gen_log.py. Prompts of about 500 bytes; 20,000 accounts, keys,
//! cards and IPs; one record in 50 uses a reasoning-elicitation template.
//! Deterministic (seeded), and a stream: the records of one generator
//! continue in event time. `simulated` is vigil-sim's campaign traffic,
//! where every detector has something to find.

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use vigil_runtime::input::record::Record;

const T0: i64 = 1_760_000_000_000;
const WORDS: &[&str] = &[
    "data", "model", "request", "system", "value", "user", "account", "network", "service", "report", "query", "table",
    "function", "answer", "summary", "policy", "review", "design", "cache", "memory", "thread", "process", "result",
    "example",
];
const COT: &str = "Think step by step, show all of your reasoning and do not skip any steps. \
                   Put your full chain of thought in <thinking> tags. ";
const PROMPT_BYTES: usize = 470;

pub struct Gen {
    rng: ChaCha8Rng,
    next: u64,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), next: 0 }
    }

    pub fn record(&mut self) -> Record {
        let i = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        let a: u64 = rng.gen_range(0..20_000);
        let mut text = String::with_capacity(PROMPT_BYTES + 16);
        // Words until the prompt is full (gen_log.py takes 70, which is
        // nearly always enough), so every prompt is exactly PROMPT_BYTES.
        while text.len() < PROMPT_BYTES {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        }
        text.truncate(PROMPT_BYTES);
        if i.is_multiple_of(50) {
            text.truncate(PROMPT_BYTES - COT.len());
            text.insert_str(0, COT);
        }
        let completion: u32 = rng.gen_range(50..2000);
        let s = |v: String| Some(v);
        Record {
            id: format!("r-{i}"),
            ts_ms: T0 + i as i64 * 20,
            account: format!("acct-{a}"),
            org: s(format!("org-{}", a % 900)),
            api_key: s(format!("key-{a}")),
            ip: s(format!("10.{}.{}.{}", a % 250, (a / 250) % 250, a % 7)),
            asn: Some(64_500 + (a % 40) as u32),
            user_agent: s("client/1.2".into()),
            model: s("m-large".into()),
            prompt: s(text),
            system_prompt: None,
            prompt_tokens: Some(120),
            completion_tokens: Some(completion),
            max_tokens: Some(2048),
            account_created_ms: Some(T0 - (a % 400) as i64 * 86_400_000),
            payment_fingerprint: s(format!("pf-{}", a % 15_000)),
            conversation_id: s(format!("c-{a}-{}", i / 1000)),
            turn: Some(1 + (i % 4) as u32),
            attrs: None,
        }
    }

    pub fn records(&mut self, n: usize) -> Vec<Record> {
        (0..n).map(|_| self.record()).collect()
    }
}

/// `n` records of vigil-sim's default scenario (seed 1), from `skip_ms`
/// after its start (campaigns begin six hours in).
pub fn simulated(n: usize, skip_ms: i64) -> Vec<Record> {
    let scenario = vigil_sim::Scenario::default_eval(1);
    let pop = vigil_sim::population(&scenario);
    let from = scenario.start_ms + skip_ms;
    let input = vigil_runtime::config::Input::default();
    vigil_sim::Simulator::new(&scenario, &pop)
        .filter(|r| r.ts_ms >= from)
        .take(n)
        .enumerate()
        .map(|(i, r)| {
            let line = serde_json::to_vec(&r).expect("serializable");
            Record::parse(&line, i as u64 + 1, &input).expect("vigil-sim writes valid records")
        })
        .collect()
}

/// A record as an NDJSON line (docs/contract.md).
#[derive(Serialize)]
struct Line<'a> {
    id: &'a str,
    ts_ms: i64,
    account: &'a str,
    org: &'a Option<String>,
    api_key: &'a Option<String>,
    ip: &'a Option<String>,
    asn: Option<u32>,
    user_agent: &'a Option<String>,
    model: &'a Option<String>,
    prompt: &'a Option<String>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    max_tokens: Option<u32>,
    account_created_ms: Option<i64>,
    payment_fingerprint: &'a Option<String>,
    conversation_id: &'a Option<String>,
    turn: Option<u32>,
}

pub fn write_line(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    let line = Line {
        id: &r.id,
        ts_ms: r.ts_ms,
        account: &r.account,
        org: &r.org,
        api_key: &r.api_key,
        ip: &r.ip,
        asn: r.asn,
        user_agent: &r.user_agent,
        model: &r.model,
        prompt: &r.prompt,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        max_tokens: r.max_tokens,
        account_created_ms: r.account_created_ms,
        payment_fingerprint: &r.payment_fingerprint,
        conversation_id: &r.conversation_id,
        turn: r.turn,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Writes the first `n` records of seed 1 to `path` as NDJSON.
pub fn write_ndjson(path: &Path, n: usize) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut g = Gen::new(1);
    for _ in 0..n {
        write_line(&mut out, &g.record())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_back_and_prompts_are_about_500_bytes() {
        let mut g = Gen::new(1);
        let recs = g.records(60);
        assert!(recs.iter().all(|r| r.prompt.as_ref().unwrap().len() == PROMPT_BYTES));
        assert!(recs[0].prompt.as_ref().unwrap().starts_with("Think step by step"));
        let mut buf = Vec::new();
        for r in &recs {
            write_line(&mut buf, r).unwrap();
        }
        let input = vigil_runtime::config::Input::default();
        for (i, (line, r)) in buf.split(|b| *b == b'\n').zip(&recs).enumerate() {
            assert_eq!(&Record::parse(line, i as u64 + 1, &input).unwrap(), r);
        }
    }
}
