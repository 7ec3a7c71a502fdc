//! records -> batches -> every plugin's worker -> combine -> verdicts, in
//! input order. For a stream, reading/parsing, scoring and writing run on
//! their own threads with bounded queues between them, so a slow consumer
//! slows the reader instead of filling memory.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::batch::handles::Hasher64;
use crate::config::{BadInputPolicy, Config, Input, Scoring};
use crate::engine::worker::{Outcome, collect_all, submit_all};
use crate::error::{BadInput, Error};
use crate::input::admit::{Admission, Origin};
use crate::input::lines::{Line, LineReader, too_long};
use crate::input::record::Record;
use crate::metrics::Metrics;
use crate::registry::load::PluginSet;
use crate::registry::{LivePlugin, Registry, Snapshot};
use crate::score::campaigns::{Campaigns, Evidence};
use crate::score::combine::{Decision, PluginResult, Verdict, verdicts};
use crate::score::shadow::Shadows;
use crate::util::lock;

/// Scores batches with whatever plugin set is live when each batch starts.
pub struct Scorer {
    /// Where the live plugin set comes from.
    pub registry: Arc<Registry>,
    /// Thresholds and batching.
    pub scoring: Scoring,
    /// Computes each batch's identity handles.
    pub hasher: Hasher64,
    /// Per-batch counters and timings go here.
    pub metrics: Arc<Metrics>,
    /// Accounts linked by shared evidence, across batches.
    pub campaigns: std::sync::Mutex<Campaigns>,
    /// What candidates in shadow would have changed.
    pub shadows: Shadows,
}

/// Per-plugin totals over a run.
#[derive(Debug, Clone, Default)]
pub struct PluginStats {
    /// The plugin's name.
    pub name: String,
    /// Its version, as its manifest gives it.
    pub version: String,
    /// Batches it was given.
    pub batches: u64,
    /// Batches it failed on.
    pub errors: u64,
    /// Time it spent on them, summed.
    pub busy: Duration,
}

impl Scorer {
    /// A scorer over a fixed plugin set (the `score` command).
    pub fn new(plugins: PluginSet, config: &Config) -> Self {
        Self::with_registry(Arc::new(Registry::fixed(plugins)), config, Arc::new(Metrics::new()))
    }

    /// A scorer over whatever `registry` has live, counting into `metrics`.
    pub fn with_registry(registry: Arc<Registry>, config: &Config, metrics: Arc<Metrics>) -> Self {
        let key = config.handle_key().expect("validated config");
        Self {
            registry,
            scoring: config.scoring.clone(),
            hasher: Hasher64::new(key),
            metrics,
            campaigns: std::sync::Mutex::new(Campaigns::new(config.campaigns.clone())),
            shadows: Shadows::new(config.scoring.clone(), config.server.max_cases),
        }
    }

    /// A batch of `records`, with their handles under this scorer's key.
    pub fn batch(&self, records: Vec<Record>) -> Batch {
        Batch::new(records, &self.hasher)
    }

    /// A batch of one partition's `records`, scored against `scope` (a
    /// cluster node's partition state).
    pub fn batch_in(&self, records: Vec<Record>, scope: Arc<crate::state::Scope>) -> Batch {
        Batch::scoped(records, &self.hasher, scope)
    }

    /// Every live plugin scores the batch concurrently; verdicts come back in
    /// order, with each plugin's outcome (in the snapshot's order).
    pub fn score(&self, batch: Batch) -> (Vec<Verdict>, Vec<Outcome>) {
        self.score_with(self.registry.snapshot(), batch)
    }

    pub(crate) fn score_with(&self, snap: Arc<Snapshot>, batch: Batch) -> (Vec<Verdict>, Vec<Outcome>) {
        self.finish(self.submit(snap, batch))
    }

    /// Hands the batch to every plugin's worker and returns at once; the
    /// workers score it while the caller submits the next batches.
    pub fn submit(&self, snap: Arc<Snapshot>, batch: Batch) -> InFlight {
        let batch = Arc::new(batch);
        let replies = submit_all(snap.plugins.iter().chain(&snap.shadows).map(|p| &*p.worker), &batch);
        InFlight { snap, batch, replies }
    }

    /// Waits for every plugin's answer on a submitted batch and combines.
    pub fn finish(&self, f: InFlight) -> (Vec<Verdict>, Vec<Outcome>) {
        let (v, o, _) = self.finish_with_evidence(f);
        (v, o)
    }

    /// `finish`, also returning the campaign evidence the batch added (a
    /// cluster node shares it with the others).
    pub fn finish_with_evidence(&self, f: InFlight) -> (Vec<Verdict>, Vec<Outcome>, Vec<Evidence>) {
        let plugins = &f.snap.plugins;
        let mut outcomes = collect_all(plugins.iter().chain(&f.snap.shadows).map(|p| &*p.worker), f.replies);
        let shadow_outcomes = outcomes.split_off(plugins.len());
        let results: Vec<PluginResult<'_>> = plugins
            .iter()
            .zip(&outcomes)
            .map(|(p, o)| PluginResult { plugin: &p.worker.plugin, mode: p.mode, result: &o.result })
            .collect();
        let mut v = verdicts(&f.batch, &results, &self.scoring);
        self.shadows.prune(&f.snap.shadows);
        if !f.snap.shadows.is_empty() {
            self.shadows.observe(&f.batch, &results, &v, &f.snap.shadows, &shadow_outcomes);
        }
        let times: Vec<i64> = f.batch.records.iter().map(|r| r.ts_ms).collect();
        let evidence = {
            let mut c = lock(&self.campaigns);
            let dropped = c.dropped();
            let evidence = c.apply(&mut v, &times, &self.scoring);
            if c.dropped() > dropped {
                self.metrics.add("vigil_campaign_links_dropped_total", vec![], (c.dropped() - dropped) as f64);
            }
            evidence
        };
        self.record(plugins, &outcomes, &v);
        (v, outcomes, evidence)
    }

    fn record(&self, plugins: &[LivePlugin], outcomes: &[Outcome], verdicts: &[Verdict]) {
        let m = &self.metrics;
        for (p, o) in plugins.iter().zip(outcomes) {
            let v = &p.worker.plugin;
            let labels = || vec![("plugin", v.name.to_string()), ("version", v.version.to_string())];
            m.add("vigil_batches_scored_total", labels(), 1.0);
            m.add("vigil_requests_scored_total", labels(), verdicts.len() as f64);
            m.observe("vigil_plugin_batch_seconds", vec![("plugin", v.name.to_string())], o.elapsed);
            if let Err(e) = &o.result {
                m.add(
                    "vigil_plugin_errors_total",
                    vec![("plugin", v.name.to_string()), ("kind", e.kind.to_string())],
                    1.0,
                );
            }
        }
        let mut counts = [0u64; 3];
        for v in verdicts {
            counts[v.decision as usize] += 1;
        }
        for (d, n) in [Decision::Allow, Decision::Flag, Decision::Block].iter().zip(counts) {
            if n > 0 {
                m.add("vigil_decisions_total", vec![("decision", d.as_str().to_string())], n as f64);
            }
        }
    }
}

/// A batch the workers are scoring: its answers arrive on `replies`.
pub struct InFlight {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) batch: Arc<Batch>,
    replies: mpsc::Receiver<(usize, Outcome)>,
}

/// What a stream run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Requests scored.
    pub requests: u64,
    /// Lines refused as bad input.
    pub bad_lines: u64,
    /// Empty or whitespace-only lines, skipped.
    pub blank_lines: u64,
    /// Verdicts of `allow`.
    pub allow: u64,
    /// Verdicts of `flag`.
    pub flag: u64,
    /// Verdicts of `block`.
    pub block: u64,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Totals for each plugin version that was live during the run.
    pub plugins: Vec<PluginStats>,
}

impl Summary {
    /// Requests scored per second of the run.
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How `score_stream` reads and scores its input.
pub struct StreamOptions {
    /// Records per batch.
    pub batch_size: usize,
    /// What a bad line does: skip it, or stop the run.
    pub on_bad_input: BadInputPolicy,
    /// Bounds on lines and records, and their admission.
    pub input: Input,
    /// Roll flagged verdicts up into cases (`--cases FILE`).
    pub cases: Option<std::sync::Arc<std::sync::Mutex<crate::score::cases::CaseBook>>>,
    /// Batches scored at once (pipelining); 1 scores one batch at a time.
    pub in_flight: usize,
}

impl StreamOptions {
    /// What `config` says (`[scoring]`, `[input]`), without cases.
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch_size: config.scoring.batch_size,
            on_bad_input: config.scoring.on_bad_input,
            input: config.input.clone(),
            cases: None,
            in_flight: config.scoring.in_flight,
        }
    }
}

/// Adds a scored batch to the run's totals.
fn tally(summary: &mut Summary, snap: &Snapshot, verdicts: &[Verdict], outcomes: &[Outcome]) {
    summary.requests += verdicts.len() as u64;
    for v in verdicts {
        match v.decision {
            Decision::Allow => summary.allow += 1,
            Decision::Flag => summary.flag += 1,
            Decision::Block => summary.block += 1,
        }
    }
    for (p, o) in snap.plugins.iter().zip(outcomes) {
        let v = &p.worker.plugin;
        let i = match summary.plugins.iter().position(|s| s.name == *v.name && s.version == *v.version) {
            Some(i) => i,
            None => {
                summary.plugins.push(PluginStats {
                    name: v.name.to_string(),
                    version: v.version.to_string(),
                    ..Default::default()
                });
                summary.plugins.len() - 1
            }
        };
        let st = &mut summary.plugins[i];
        st.batches += 1;
        st.busy += o.elapsed;
        st.errors += u64::from(o.result.is_err());
    }
}

enum Msg {
    Batch(Vec<Record>),
    /// Stop: the first bad line under `fail`.
    Stop(BadInput),
}

/// Scores NDJSON from `input` to `output`. Bad lines go to `on_bad` as they
/// are found; under `fail` the first one ends the run with that error, after
/// every record accepted before it has been scored and written.
pub fn score_stream<R, W>(
    scorer: &Scorer,
    input: R,
    output: W,
    opts: &StreamOptions,
    on_bad: &(dyn Fn(&BadInput) + Sync),
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, Error>
where
    R: BufRead + Send,
    W: Write + Send,
{
    let start = Instant::now();
    let mut summary = Summary::default();
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Msg>(2);
    let (out_tx, out_rx) = mpsc::sync_channel::<Vec<Verdict>>(2);

    std::thread::scope(|s| -> Result<Summary, Error> {
        let reader = s.spawn(move || read_batches(input, opts, batch_tx, on_bad));
        let writer = s.spawn(move || write_verdicts(output, out_rx));

        let mut stop = None;
        // Batches being scored, oldest first. Each plugin's worker takes
        // them in order, so a fast plugin runs ahead on the next batch
        // while a slow one finishes this one; verdicts still leave in
        // input order.
        let mut in_flight: VecDeque<(InFlight, Vec<i64>)> = VecDeque::new();
        let finish_oldest = |in_flight: &mut VecDeque<(InFlight, Vec<i64>)>, summary: &mut Summary| -> bool {
            let Some((f, times)) = in_flight.pop_front() else { return true };
            let snap = f.snap.clone();
            let (verdicts, outcomes) = scorer.finish(f);
            tally(summary, &snap, &verdicts, &outcomes);
            if let Some(book) = &opts.cases {
                let mut book = lock(book);
                for (v, ts) in verdicts.iter().zip(&times) {
                    book.observe(v, *ts);
                }
            }
            on_progress(summary.requests);
            out_tx.send(verdicts).is_ok() // false: the writer failed; its error is reported below
        };
        let mut writer_ok = true;
        for msg in batch_rx {
            let records = match msg {
                Msg::Batch(r) => r,
                Msg::Stop(bad) => {
                    stop = Some(bad);
                    break;
                }
            };
            let times: Vec<i64> =
                if opts.cases.is_some() { records.iter().map(|r| r.ts_ms).collect() } else { Vec::new() };
            let batch = scorer.batch(records);
            in_flight.push_back((scorer.submit(scorer.registry.snapshot(), batch), times));
            if in_flight.len() >= opts.in_flight.max(1) && !finish_oldest(&mut in_flight, &mut summary) {
                writer_ok = false;
                break;
            }
        }
        while writer_ok && !in_flight.is_empty() {
            writer_ok = finish_oldest(&mut in_flight, &mut summary);
        }
        drop(out_tx);
        let written = writer.join().expect("writer thread panicked");
        let read = reader.join().expect("reader thread panicked");
        written?;
        let (bad, blank) = read?;
        summary.bad_lines = bad;
        summary.blank_lines = blank;
        summary.elapsed = start.elapsed();
        match stop {
            Some(b) => Err(Error::BadInput(b)),
            None => Ok(summary),
        }
    })
}

fn read_batches<R: BufRead>(
    input: R,
    opts: &StreamOptions,
    tx: mpsc::SyncSender<Msg>,
    on_bad: &(dyn Fn(&BadInput) + Sync),
) -> Result<(u64, u64), Error> {
    let mut lines = LineReader::new(input, opts.input.max_line_bytes);
    let mut buf = Vec::new();
    let mut batch = Vec::with_capacity(opts.batch_size);
    let mut admission = Admission::new(&opts.input);
    let (mut bad_lines, mut blank) = (0u64, 0u64);
    loop {
        let line = lines.next_line(&mut buf).map_err(|e| Error::io("reading input", e))?;
        let parsed = match line {
            None => break,
            Some(Line::TooLong(n, len)) => Err(too_long(n, len, opts.input.max_line_bytes)),
            Some(Line::Text(n)) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    blank += 1;
                    continue;
                }
                Record::parse(&buf, n, &opts.input).and_then(|r| admission.admit(&r, Origin::Line(n)).map(|()| r))
            }
        };
        match parsed {
            Ok(r) => {
                batch.push(r);
                if batch.len() == opts.batch_size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(opts.batch_size));
                    if tx.send(Msg::Batch(full)).is_err() {
                        return Ok((bad_lines, blank));
                    }
                }
            }
            Err(bad) => {
                bad_lines += 1;
                on_bad(&bad);
                if opts.on_bad_input == BadInputPolicy::Fail {
                    // What was accepted before the bad line is still scored.
                    if !batch.is_empty() {
                        let _ = tx.send(Msg::Batch(std::mem::take(&mut batch)));
                    }
                    let _ = tx.send(Msg::Stop(bad));
                    return Ok((bad_lines, blank));
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Msg::Batch(batch));
    }
    Ok((bad_lines, blank))
}

fn write_verdicts<W: Write>(output: W, rx: mpsc::Receiver<Vec<Verdict>>) -> Result<(), Error> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, output);
    let werr = |e: std::io::Error| Error::io("writing verdicts", e);
    for verdicts in rx {
        for v in &verdicts {
            serde_json::to_writer(&mut out, v).map_err(|e| werr(e.into()))?;
            out.write_all(b"\n").map_err(werr)?;
        }
    }
    out.flush().map_err(werr)
}
