//! Section 1: each bundled detector compiled natively vs the same crate as
//! the bundled wasm plugin, on the same batches and the same host state
//! implementation.
//!
//! Plugin side: `pipeline::run_plugins` on the plugin's worker: building the
//! per-plugin requests from the host's records, lowering, the guest,
//! lifting, validation, and the hand-off to the worker thread.
//! Native side: the same requests built as `vigil_sdk::Request`s with a
//! copy of the batch's text features (the native equivalent of lowering),
//! then `Detector::score` with a `NativeHost` over the host's own
//! `state::Namespace`. Both sides get the features the host computed once
//! for the batch, before timing: every plugin shares them (section 4 states
//! what computing them costs).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vigil_runtime::batch::Batch;
use vigil_runtime::batch::handles::{Handles, IdField};
use vigil_runtime::engine::Runtime;
use vigil_runtime::engine::grants::Resolver;
use vigil_runtime::engine::worker::{PluginVersion, Worker};
use vigil_runtime::input::record::Record;
use vigil_runtime::plugin::files::PluginFiles;
use vigil_runtime::plugin::manifest::{Grants, PluginManifest};
use vigil_runtime::state::Namespace;
use vigil_sdk::text::TextFeatures;
use vigil_sdk::{CounterOp, Detector, Field, Host, Level, Request, SetOp, SetView, Signal};

use crate::progress;
use crate::stats::{median, timed};

/// The record as a plugin with `g` may see it: mirrors
/// `vigil_runtime::engine::grants::granted_batch` and the SDK's columns,
/// field for field.
pub fn request(g: &Grants, r: &Record, h: &Handles) -> Request {
    let pick = |granted: bool, v: u64| if granted { v } else { 0 };
    Request {
        ts_ms: r.ts_ms,
        account: pick(g.account, h.account),
        org: pick(g.org, h.org),
        api_key: pick(g.api_key, h.api_key),
        ip: pick(g.ip, h.ip),
        ip_prefix: pick(g.ip_prefix || g.ip, h.ip_prefix),
        asn: r.asn.filter(|_| g.asn),
        user_agent: pick(g.user_agent, h.user_agent),
        model: pick(g.model, h.model),
        payment_fingerprint: pick(g.payment_fingerprint, h.payment_fingerprint),
        conversation: pick(g.conversation_id, h.conversation),
        turn: r.turn.filter(|_| g.turn),
        prompt: if g.prompt { r.prompt.clone() } else { None },
        system_prompt: if g.system_prompt { r.system_prompt.clone() } else { None },
        prompt_tokens: r.prompt_tokens.filter(|_| g.prompt_tokens),
        completion_tokens: r.completion_tokens.filter(|_| g.completion_tokens),
        max_tokens: r.max_tokens.filter(|_| g.max_tokens),
        account_created_ms: r.account_created_ms.filter(|_| g.account_created_ms),
        attrs: match &r.attrs {
            Some(a) if g.all_attrs || !g.attrs.is_empty() => {
                a.iter().filter(|(k, _)| g.attr(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => Vec::new(),
        },
    }
}

fn id_field(f: Field) -> IdField {
    match f {
        Field::Account => IdField::Account,
        Field::Org => IdField::Org,
        Field::ApiKey => IdField::ApiKey,
        Field::Ip => IdField::Ip,
        Field::IpPrefix => IdField::IpPrefix,
        Field::UserAgent => IdField::UserAgent,
        Field::Model => IdField::Model,
        Field::PaymentFingerprint => IdField::PaymentFingerprint,
        Field::Conversation => IdField::Conversation,
    }
}

/// `vigil_sdk::Host` natively, over the host's state implementation, with
/// the same per-call locking and the same `batch::Resolver` as the wasm
/// host's imports (host/src/engine.rs). Logs are dropped.
pub struct NativeHost<'a> {
    grants: &'a Grants,
    state: &'a Mutex<Namespace>,
    batch: &'a Batch,
    resolver: Resolver,
}

impl<'a> NativeHost<'a> {
    pub fn new(grants: &'a Grants, state: &'a Mutex<Namespace>, batch: &'a Batch) -> Self {
        Self { grants, state, batch, resolver: Resolver::default() }
    }

    fn state(&self) -> MutexGuard<'_, Namespace> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Host for NativeHost<'_> {
    fn log(&mut self, _level: Level, _message: &str) {}

    fn resolve(&mut self, field: Field, handle: u64) -> Option<String> {
        self.resolver.resolve(self.batch, self.grants, id_field(field), handle)
    }

    fn get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        self.state().get(key, now_ms)
    }

    fn set(&mut self, key: u64, value: &[u8], expires_at_ms: Option<i64>) {
        self.state().set(key, value.to_vec(), expires_at_ms);
    }

    fn remove(&mut self, key: u64) {
        self.state().remove(key)
    }

    fn counter_add(&mut self, ops: &[CounterOp]) -> Vec<u64> {
        let mut ns = self.state();
        ops.iter().map(|op| ns.counter_add(op.key, op.now_ms, op.window_ms, op.delta)).collect()
    }

    fn sets_update(&mut self, ops: &[SetOp]) -> Vec<SetView> {
        let mut ns = self.state();
        ops.iter()
            .map(|op| {
                let shape = (op.bucket_ms, op.buckets);
                ns.set_update(op.key, op.member, op.tags, op.now_ms, shape, op.since_ms, op.members).into()
            })
            .collect()
    }
}

/// A configured native detector behind one signature.
pub type Native = Box<dyn FnMut(&vigil_sdk::Batch, &mut dyn Host) -> Vec<Signal>>;

fn make<D: Detector>(config: &str) -> Result<Native, String> {
    let mut d = D::new(vigil_sdk::parse_config(config)?)?;
    Ok(Box::new(move |batch, host| d.score(batch, host)))
}

/// The native build of a bundled plugin, by name.
pub fn native(name: &str, config: &str) -> Result<Native, String> {
    match name {
        "velocity" => make::<velocity::Velocity>(config),
        "reasoning-elicitation" => make::<reasoning_elicitation::ReasoningElicitation>(config),
        "output-harvest" => make::<output_harvest::OutputHarvest>(config),
        "lockstep" => make::<lockstep::Lockstep>(config),
        "shared-infra" => make::<shared_infra::SharedInfra>(config),
        "template-fleet" => make::<template_fleet::TemplateFleet>(config),
        "fanout" => make::<fanout::Fanout>(config),
        _ => Err(format!("no native build of {name} in vigil-bench")),
    }
}

/// Batches to score, and what they are.
pub struct Workload {
    pub name: &'static str,
    pub about: &'static str,
    pub batches: Vec<Arc<Batch>>,
}

/// One workload's rows, one per detector.
pub struct Table {
    pub name: &'static str,
    pub about: &'static str,
    pub rows: Vec<Row>,
}

pub struct Row {
    pub name: String,
    pub batches: usize,
    pub batch_size: usize,
    /// Medians over the measured batches.
    pub native_ns: f64,
    pub plugin_ns: f64,
    /// Median over batches of native time / plugin time on the same batch.
    pub ratio: f64,
    /// Signals differing in score, labels or reason; and the largest score difference.
    pub mismatches: usize,
    pub score_mismatches: usize,
    pub max_diff: f32,
    pub signals: usize,
    pub flagged: usize,
    pub plugin_errors: usize,
}

fn per_record_ns(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e9 / n.max(1) as f64
}

/// Every bundled detector, one at a time; within one, the plugin and the
/// native build alternate in which goes first on each batch. The first
/// `warmup` batches are scored (so state matches) but not timed.
pub fn run(
    config: &vigil_runtime::Config,
    runtime: &Runtime,
    plugins: &[PluginFiles],
    workloads: &[Workload],
    warmup: usize,
) -> anyhow::Result<Vec<Table>> {
    let mut tables = Vec::new();
    for w in workloads {
        // The host computes a batch's text features once for every plugin:
        // here, before anything is timed.
        for b in &w.batches {
            b.prompt_features();
            b.system_features();
        }
        let mut rows = Vec::new();
        for files in plugins {
            progress!("native vs plugin, {}: {} ({} batches)", w.name, files.name, w.batches.len());
            rows.push(one(config, runtime, files, &w.batches, warmup)?);
        }
        tables.push(Table { name: w.name, about: w.about, rows });
    }
    Ok(tables)
}

fn one(
    config: &vigil_runtime::Config,
    runtime: &Runtime,
    files: &PluginFiles,
    batches: &[Arc<Batch>],
    warmup: usize,
) -> anyhow::Result<Row> {
    let name = &files.name;
    let err = |e: vigil_runtime::PluginError| anyhow::anyhow!("{e}");
    let manifest = PluginManifest::parse(name, &files.manifest, &config.limits, &config.ceilings).map_err(err)?;

    let plugin_state = Arc::new(Mutex::new(Namespace::new(config.state.clone())));
    let (version, seed) =
        PluginVersion::load(runtime, name, &files.wasm, &files.manifest, config, plugin_state.clone()).map_err(err)?;
    let worker = Worker::spawn(version, seed, plugin_state);

    let native_state = Mutex::new(Namespace::new(config.state.clone()));
    let bounds = &manifest.raw.limits;
    native_state.lock().unwrap().set_bounds(bounds.state_entries, bounds.state_bytes);
    let mut detector = native(name, &manifest.config_json).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let grants = &manifest.grants;

    let (mut native_ns, mut plugin_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut row = Row {
        name: name.clone(),
        batches: batches.len().saturating_sub(warmup),
        batch_size: batches.first().map_or(0, |b| b.len()),
        native_ns: 0.0,
        plugin_ns: 0.0,
        ratio: 0.0,
        mismatches: 0,
        score_mismatches: 0,
        max_diff: 0.0,
        signals: 0,
        flagged: 0,
        plugin_errors: 0,
    };
    for (i, batch) in batches.iter().enumerate() {
        let mut run_native = || {
            timed(|| {
                let reqs: Vec<Request> =
                    batch.records.iter().zip(&batch.handles).map(|(r, h)| request(grants, r, h)).collect();
                let text = |granted: bool, f: &TextFeatures| if granted { f.clone() } else { TextFeatures::default() };
                let reqs = vigil_sdk::Batch::with_text(
                    reqs,
                    text(grants.prompt, batch.prompt_features()),
                    text(grants.system_prompt, batch.system_features()),
                );
                let mut host = NativeHost::new(grants, &native_state, batch);
                let signals = detector(&reqs, &mut host);
                assert_eq!(signals.len(), reqs.len(), "{name}: native signal count");
                signals
            })
        };
        let run_plugin = || timed(|| vigil_runtime::engine::worker::run_all(std::iter::once(&worker), batch).remove(0));
        // ABAB... then BABA...: which side goes first alternates per batch.
        let ((native, tn), (outcome, tp)) = if i % 2 == 0 {
            let p = run_plugin();
            (run_native(), p)
        } else {
            let n = run_native();
            (n, run_plugin())
        };
        match outcome.result {
            Ok(plugin) => {
                for (a, b) in native.iter().zip(&plugin) {
                    row.signals += 1;
                    row.flagged += usize::from(b.score > 0.0);
                    let diff = (a.score - b.score).abs();
                    row.max_diff = row.max_diff.max(diff);
                    row.score_mismatches += usize::from(a.score.to_bits() != b.score.to_bits());
                    row.mismatches += usize::from(
                        a.score.to_bits() != b.score.to_bits() || a.labels != b.labels || a.reason != b.reason,
                    );
                }
            }
            Err(e) => {
                row.plugin_errors += 1;
                progress!("  {name}: plugin failed on batch {i}: {e}");
            }
        }
        if i >= warmup {
            let n = batch.len();
            native_ns.push(per_record_ns(tn, n));
            plugin_ns.push(per_record_ns(tp, n));
            ratios.push(tn.as_secs_f64() / tp.as_secs_f64().max(1e-12));
        }
    }
    row.native_ns = median(&native_ns);
    row.plugin_ns = median(&plugin_ns);
    row.ratio = median(&ratios);
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_runtime::batch::handles::Hasher64;

    #[test]
    fn native_requests_carry_exactly_the_granted_fields() {
        let mut records = crate::loadgen::Gen::new(7).records(3);
        records[1].attrs = Some([("tier".to_string(), "pro".to_string()), ("x".into(), "y".into())].into());
        let batch = Batch::new(records, &Hasher64::new([9; 16]));
        let (r, h) = (&batch.records[1], &batch.handles[1]);

        let none = request(&Grants::default(), r, h);
        assert_eq!(none.ts_ms, r.ts_ms);
        assert_eq!((none.account, none.ip, none.ip_prefix, none.prompt.as_deref()), (0, 0, 0, None));
        assert!(none.attrs.is_empty() && none.asn.is_none() && none.completion_tokens.is_none());

        let g = Grants::parse(&["account".into(), "ip".into(), "prompt".into(), "attrs.tier".into()]).unwrap();
        let some = request(&g, r, h);
        assert_eq!((some.account, some.ip, some.ip_prefix), (h.account, h.ip, h.ip_prefix));
        assert_eq!(some.org, 0);
        assert_eq!(some.prompt, r.prompt);
        assert_eq!(some.attrs, vec![("tier".to_string(), "pro".to_string())]);

        // resolve answers granted fields of this batch only.
        let state = Mutex::new(Namespace::new(Default::default()));
        let mut host = NativeHost::new(&g, &state, &batch);
        assert_eq!(host.resolve(Field::Account, h.account).as_deref(), Some(r.account.as_str()));
        assert_eq!(host.resolve(Field::Org, h.org), None);
        assert_eq!(host.resolve(Field::Account, 12345), None);
    }

    /// Request i as the SDK builds it from the host's columns (contract
    /// 0.2: an empty column is an ungranted field, an absent text `None`).
    fn from_columns(c: &vigil_runtime::engine::bindings::v0_2::vigil::detector::types::Batch, i: usize) -> Request {
        let at = |col: &[u64]| col.get(i).copied().unwrap_or(0);
        let opt = |col: &[Option<u32>]| col.get(i).copied().flatten();
        let text = |t: &Option<vigil_runtime::engine::bindings::v0_2::vigil::detector::types::Text>| {
            let t = t.as_ref()?;
            let start = if i == 0 { 0 } else { t.ends[i - 1] as usize };
            (!t.absent.contains(&(i as u32))).then(|| t.data[start..t.ends[i] as usize].to_string())
        };
        Request {
            ts_ms: c.ts_ms[i],
            account: at(&c.account),
            org: at(&c.org),
            api_key: at(&c.api_key),
            ip: at(&c.ip),
            ip_prefix: at(&c.ip_prefix),
            asn: opt(&c.asn),
            user_agent: at(&c.user_agent),
            model: at(&c.model),
            payment_fingerprint: at(&c.payment_fingerprint),
            conversation: at(&c.conversation),
            turn: opt(&c.turn),
            prompt: text(&c.prompt),
            system_prompt: text(&c.system_prompt),
            prompt_tokens: opt(&c.prompt_tokens),
            completion_tokens: opt(&c.completion_tokens),
            max_tokens: opt(&c.max_tokens),
            account_created_ms: c.account_created_ms.get(i).copied().flatten(),
            attrs: c.attrs.iter().filter(|a| a.index as usize == i).map(|a| (a.key.clone(), a.value.clone())).collect(),
        }
    }

    #[test]
    fn the_native_mirror_matches_the_hosts_columns() {
        // The native side builds requests directly; a plugin gets them from
        // the host's columns (`granted_batch`) through the SDK. The two must
        // agree for every grant set.
        let mut records = crate::loadgen::Gen::new(3).records(4);
        records[2].attrs = Some([("tier".to_string(), "pro".to_string())].into());
        records[3].system_prompt = Some("be brief".into());
        records[1].prompt = None;
        let batch = Batch::new(records, &Hasher64::new([5; 16]));
        // Every grant there is (with one attribute key in place of the
        // `attrs.KEY` pattern).
        let all: Vec<String> = vigil_runtime::plugin::manifest::GRANTABLE
            .iter()
            .map(|(g, _)| if *g == "attrs.KEY" { "attrs.tier" } else { g })
            .map(String::from)
            .collect();
        let grant_sets = [vec![], all.clone(), all[..7].to_vec(), all[7..].to_vec()];
        for grants in grant_sets {
            let g = Grants::parse(&grants).unwrap();
            let columns = vigil_runtime::engine::grants::granted_batch(&g, &batch);
            for (i, (r, h)) in batch.records.iter().zip(&batch.handles).enumerate() {
                assert_eq!(request(&g, r, h), from_columns(&columns, i), "grants {grants:?}, request {i}");
            }
        }
    }

    #[test]
    fn every_bundled_detector_has_a_native_build_that_scores_a_batch() {
        let config = vigil_runtime::Config::default();
        let records = crate::loadgen::Gen::new(1).records(64);
        let batch = Batch::new(records, &Hasher64::new([1; 16]));
        for f in vigil_bundle::files() {
            let m = PluginManifest::parse(&f.name, &f.manifest, &config.limits, &config.ceilings).unwrap();
            let mut d = native(&f.name, &m.config_json).unwrap();
            let state = Mutex::new(Namespace::new(config.state.clone()));
            let reqs: Vec<Request> =
                batch.records.iter().zip(&batch.handles).map(|(r, h)| request(&m.grants, r, h)).collect();
            let reqs = vigil_sdk::Batch::new(reqs);
            let signals = d(&reqs, &mut NativeHost::new(&m.grants, &state, &batch));
            assert_eq!(signals.len(), reqs.len(), "{}", f.name);
        }
    }
}
