//! A test plugin whose behaviour its manifest picks, so one component covers
//! many host paths. `count` (the default) scores each request by how many
//! requests its account has sent so far, from host state.

use serde::Deserialize;
use vigil_sdk::hash::{key, tag};
use vigil_sdk::{Batch, CounterOp, Detector, Host, Signal};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// score = min(requests by the account so far / 100, 1).
    #[default]
    Count,
    /// Panics on every batch.
    Panic,
    /// Loops forever.
    Spin,
    /// Returns NaN scores.
    Nan,
    /// Returns one signal too few.
    Short,
    /// Returns an error for the batch.
    Err,
    /// Panics when the batch's first record has this `ts_ms`, else counts.
    PanicAt(i64),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub behaviour: Behaviour,
    /// Refuse the config at init.
    pub fail_init: bool,
    /// Added to every `count` reason, to tell versions apart.
    pub tag: String,
    /// `count`: panic / loop forever once an account's count passes this
    /// (so a plugin passes the reload smoke test and fails on live state).
    pub panic_over: Option<u64>,
    pub spin_over: Option<u64>,
}

pub struct Behave {
    cfg: Config,
}

const SEEN: u64 = tag("behave/seen");

impl Detector for Behave {
    const DESCRIPTION: &'static str = "configurable test plugin";

    type Config = Config;

    fn new(cfg: Config) -> Result<Self, String> {
        if cfg.fail_init {
            return Err("fail_init is set".into());
        }
        Ok(Self { cfg })
    }

    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal> {
        match self.cfg.behaviour {
            Behaviour::Panic => panic!("behave: asked to panic"),
            Behaviour::PanicAt(ts) if batch.first().map(|r| r.ts_ms) == Some(ts) => {
                panic!("behave: panic at {ts}")
            }
            Behaviour::Spin => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Behaviour::Nan => {
                return batch
                    .iter()
                    .map(|_| Signal { score: f32::NAN, labels: vec![], reason: String::new() })
                    .collect();
            }
            Behaviour::Short => return batch.iter().skip(1).map(|_| Signal::none()).collect(),
            Behaviour::Err => return Vec::new(),
            _ => {}
        }
        let ops: Vec<CounterOp> = batch
            .iter()
            .map(|r| CounterOp { key: key(SEEN, r.account), now_ms: r.ts_ms, window_ms: u32::MAX, delta: 1 })
            .collect();
        let totals = host.counter_add(&ops);
        let top = totals.iter().copied().max().unwrap_or(0);
        if self.cfg.panic_over.is_some_and(|n| top > n) {
            panic!("behave: count {top} is over panic_over");
        }
        if self.cfg.spin_over.is_some_and(|n| top > n) {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        totals
            .iter()
            .map(|&n| Signal::new((n as f32 / 100.0).min(1.0), &["count"], format!("count={n}{}", self.cfg.tag)))
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
vigil_sdk::export_detector!(Behave);
