//! Section 4: the real `vigil score`, file to file, as a subprocess; a
//! batch-size sweep (throughput from the binary, per-batch latency in
//! process); and one core vs two.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vigil_runtime::config::EngineConfig;
use vigil_runtime::engine::Runtime;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;

use crate::loadgen::{Gen, write_ndjson};
use crate::progress;
use crate::stats::{median, percentile, timed, us};

/// Where the inputs, outputs and the compiled-plugin cache live.
pub struct Env {
    pub vigil: PathBuf,
    /// Another binary whose headline runs are interleaved with `vigil`'s.
    pub baseline: Option<PathBuf>,
    pub dir: PathBuf,
    pub cache_dir: PathBuf,
}

/// One `vigil score` run.
pub struct Run {
    pub wall: Duration,
    /// The scoring rate vigil reports itself (excludes startup), if found.
    pub reported_rps: Option<f64>,
}

impl Env {
    /// The NDJSON input of the first `n` generated records, written once.
    pub fn input(&self, n: usize) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("input-{n}.ndjson"));
        if !path.exists() {
            progress!("writing {n} records to {}", path.display());
            write_ndjson(&path, n)?;
        }
        Ok(path)
    }

    /// `vigil score --input FILE --output FILE`, optionally under `taskset -c CPUS`.
    pub fn score(&self, input: &Path, batch_size: Option<usize>, cpus: Option<&str>) -> anyhow::Result<Run> {
        self.score_with(&self.vigil, input, batch_size, cpus)
    }

    /// `score` with another binary.
    pub fn score_with(
        &self,
        vigil: &Path,
        input: &Path,
        batch_size: Option<usize>,
        cpus: Option<&str>,
    ) -> anyhow::Result<Run> {
        let output = self.dir.join("verdicts.ndjson");
        let mut cmd = match cpus {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", c]).arg(vigil);
                t
            }
            None => Command::new(vigil),
        };
        cmd.arg("score").arg("--input").arg(input).arg("--output").arg(&output);
        if let Some(b) = batch_size {
            cmd.arg("--batch-size").arg(b.to_string());
        }
        cmd.env("VIGIL_CACHE_DIR", &self.cache_dir).env_remove("RUST_LOG");
        let (out, wall) = timed(|| cmd.output());
        let out = out.map_err(|e| anyhow::anyhow!("running {}: {e}", vigil.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(out.status.success(), "vigil score failed ({}):\n{stderr}", out.status);
        let _ = std::fs::remove_file(&output);
        Ok(Run { wall, reported_rps: reported_rps(&stderr) })
    }
}

/// "scored N requests in X s (Y requests/s)" from vigil's summary.
fn reported_rps(stderr: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.starts_with("scored "))?;
    let open = line.find('(')?;
    line[open + 1..].split_whitespace().next()?.parse().ok()
}

/// The release `vigil` binary: `--vigil PATH`, else built with cargo
/// (a no-op when up to date) next to this benchmark's own binary.
pub fn locate_vigil(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.exists(), "--vigil {}: no such file", p.display());
        return Ok(p);
    }
    let here = std::env::current_exe()?;
    let bin = here.parent().map(|d| d.join("vigil")).ok_or_else(|| anyhow::anyhow!("no directory for the binary"))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace");
    progress!("cargo build --release -p vigil");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "vigil", "--bin", "vigil"])
        .status();
    match built {
        Ok(s) if s.success() => {}
        _ if bin.exists() => progress!("building vigil failed; using the existing {}", bin.display()),
        other => anyhow::bail!("could not build vigil ({other:?}) and {} does not exist", bin.display()),
    }
    anyhow::ensure!(bin.exists(), "{} does not exist after building", bin.display());
    Ok(bin)
}

pub struct Sizes {
    pub records: usize,
    pub runs: usize,
    /// (batch size, records through the binary) for the sweep.
    pub sweep: Vec<(usize, usize)>,
    pub sweep_rounds: usize,
    /// Records scored in process per batch size, for the latency columns
    /// (at least `min_batches` batches, at most `max_batches`).
    pub latency_records: usize,
    pub min_batches: usize,
    pub max_batches: usize,
    pub scaling_rounds: usize,
}

pub struct Headline {
    pub records: usize,
    pub runs: usize,
    pub wall_s: f64,
    pub rps: f64,
    pub reported_rps: Option<f64>,
    /// The baseline binary's runs, interleaved with these: (path, wall s,
    /// requests/s, vigil's own requests/s).
    pub baseline: Option<(String, f64, f64, Option<f64>)>,
    /// The host's floor: the pipeline `vigil score` runs, with no plugin,
    /// in this process on the same input (requests/s, median).
    pub floor_rps: f64,
    /// What computing the prompts' word features costs the host (once per
    /// batch, for every plugin granted the text): ns per record, one thread.
    pub features_ns: f64,
}

pub struct SweepRow {
    pub batch_size: usize,
    pub records: usize,
    pub wall_rps: f64,
    pub reported_rps: Option<f64>,
    pub batches: usize,
    pub p50_us: f64,
    pub p99_us: f64,
}

pub struct Scaling {
    pub records: usize,
    pub rounds: usize,
    pub one_core_s: f64,
    pub two_cores_s: f64,
}

fn median_opt(v: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = v.iter().flatten().copied().collect();
    (!v.is_empty()).then(|| median(&v))
}

/// The headline run: the whole bundled set, enforce mode, warm cache.
pub fn headline(env: &Env, config: &vigil_runtime::Config, s: &Sizes) -> anyhow::Result<Headline> {
    let input = env.input(s.records)?;
    progress!("vigil score: warming the compiled-plugin cache");
    env.score(&env.input(1000)?, None, None)?;
    if let Some(b) = &env.baseline {
        env.score_with(b, &env.input(1000)?, None, None)?;
    }
    let (mut walls, mut reported) = (Vec::new(), Vec::new());
    let (mut base_walls, mut base_reported) = (Vec::new(), Vec::new());
    let mut floors = Vec::new();
    for i in 0..s.runs {
        let f = floor(env, config, &input, s.records)?;
        progress!("host floor (no plugin): run {}/{}: {f:.0} requests/s", i + 1, s.runs);
        floors.push(f);
        // With a baseline, which binary goes first alternates. (Without
        // one, `None` stands for this binary: run it once.)
        let mut sides: Vec<Option<&PathBuf>> = std::iter::once(None).chain(env.baseline.as_ref().map(Some)).collect();
        if i % 2 == 1 {
            sides.reverse();
        }
        for side in sides.into_iter() {
            match side {
                None => {
                    let r = env.score(&input, None, None)?;
                    progress!("vigil score: run {}/{}: {:.2} s", i + 1, s.runs, r.wall.as_secs_f64());
                    walls.push(r.wall.as_secs_f64());
                    reported.push(r.reported_rps);
                }
                Some(b) => {
                    let r = env.score_with(b, &input, None, None)?;
                    progress!("baseline vigil score: run {}/{}: {:.2} s", i + 1, s.runs, r.wall.as_secs_f64());
                    base_walls.push(r.wall.as_secs_f64());
                    base_reported.push(r.reported_rps);
                }
            }
        }
    }
    let wall_s = median(&walls);
    let baseline = env.baseline.as_ref().map(|b| {
        let w = median(&base_walls);
        (b.display().to_string(), w, s.records as f64 / w, median_opt(&base_reported))
    });
    Ok(Headline {
        records: s.records,
        runs: s.runs,
        wall_s,
        rps: s.records as f64 / wall_s,
        reported_rps: median_opt(&reported),
        baseline,
        floor_rps: median(&floors),
        features_ns: features_ns(config, &input)?,
    })
}

/// The floor's missing part: the text features every 0.2 plugin granted a
/// text shares, computed for each batch of the input (parsing not timed).
fn features_ns(config: &vigil_runtime::Config, input: &Path) -> anyhow::Result<f64> {
    use std::io::BufRead;
    use vigil_runtime::input::record::Record;
    use vigil_sdk::text::TextFeatures;

    let file = std::io::BufReader::new(std::fs::File::open(input)?);
    let (mut batch, mut total, mut n) = (Vec::new(), std::time::Duration::ZERO, 0usize);
    let mut time = |batch: &mut Vec<Record>| {
        let (_, t) = timed(|| {
            let p = TextFeatures::compute(batch.iter().map(|r| r.prompt.as_deref()));
            let s = TextFeatures::compute(batch.iter().map(|r| r.system_prompt.as_deref()));
            std::hint::black_box((p, s));
        });
        total += t;
        n += batch.len();
        batch.clear();
    };
    for (i, line) in file.lines().enumerate() {
        batch.push(Record::parse(line?.as_bytes(), i as u64 + 1, &config.input).map_err(|e| anyhow::anyhow!("{e}"))?);
        if batch.len() == config.scoring.batch_size {
            time(&mut batch);
        }
    }
    time(&mut batch);
    Ok(total.as_secs_f64() * 1e9 / n.max(1) as f64)
}

/// What the host alone allows: `vigil score`'s pipeline (read, parse,
/// admission, handles, combine, the campaign stage, verdict JSON, write to
/// a file) with an empty plugin set, from a fresh state, in process, so
/// without process start or plugin loading (compare with "vigil's own").
fn floor(env: &Env, config: &vigil_runtime::Config, input: &Path, records: usize) -> anyhow::Result<f64> {
    use std::io::{BufReader, BufWriter};
    use vigil_runtime::registry::load::PluginSet;
    use vigil_runtime::score::pipeline::{StreamOptions, score_stream};

    let scorer = Scorer::new(PluginSet { workers: Vec::new(), failures: Vec::new() }, config);
    let reader = BufReader::with_capacity(1 << 16, std::fs::File::open(input)?);
    let output = env.dir.join("floor-verdicts.ndjson");
    let writer = BufWriter::new(std::fs::File::create(&output)?);
    // The options `vigil score` takes from the same config.
    let opts = StreamOptions::from_config(config);
    let (summary, wall) = timed(|| score_stream(&scorer, reader, writer, &opts, &|_| {}, &|_| {}));
    let summary = summary?;
    anyhow::ensure!(summary.requests as usize == records, "the floor run scored {} of {records}", summary.requests);
    let _ = std::fs::remove_file(&output);
    Ok(records as f64 / wall.as_secs_f64())
}

/// Throughput per batch size from the binary (sizes interleaved per round),
/// then per-batch latency in process through every bundled plugin.
pub fn sweep(env: &Env, config: &vigil_runtime::Config, s: &Sizes) -> anyhow::Result<Vec<SweepRow>> {
    let mut walls = vec![Vec::new(); s.sweep.len()];
    let mut reported = vec![Vec::new(); s.sweep.len()];
    for round in 0..s.sweep_rounds {
        for (i, &(bs, n)) in s.sweep.iter().enumerate() {
            let input = env.input(n)?;
            let r = env.score(&input, Some(bs), None)?;
            progress!("sweep round {}: --batch-size {bs}: {n} records in {:.2} s", round + 1, r.wall.as_secs_f64());
            walls[i].push(r.wall.as_secs_f64());
            reported[i].push(r.reported_rps);
        }
    }

    // In process: one scorer over the bundled set (from the warm cache).
    let engine = EngineConfig { cache_dir: env.cache_dir.clone(), ..Default::default() };
    let runtime = Runtime::with_config(&engine, true)?;
    let state = StateStore::new(config.state.clone());
    let set =
        vigil_runtime::registry::load::load(&runtime, config, &state, vigil_bundle::files(), &Default::default(), None);
    anyhow::ensure!(set.failures.is_empty(), "bundled plugins failed to load: {:?}", set.failures);
    let scorer = Scorer::new(set, config);
    let mut load = Gen::new(2);
    let mut rows = Vec::new();
    for (i, &(bs, n)) in s.sweep.iter().enumerate() {
        let batches = (s.latency_records / bs).clamp(s.min_batches, s.max_batches);
        progress!("batch latency: {batches} batches of {bs} in process");
        // Two untimed batches first.
        let mut lat = Vec::with_capacity(batches);
        for b in 0..batches + 2 {
            let batch = scorer.batch(load.records(bs));
            let (_, t) = timed(|| scorer.score(batch));
            if b >= 2 {
                lat.push(us(t));
            }
        }
        let wall = median(&walls[i]);
        rows.push(SweepRow {
            batch_size: bs,
            records: n,
            wall_rps: n as f64 / wall,
            reported_rps: median_opt(&reported[i]),
            batches,
            p50_us: percentile(&lat, 50.0),
            p99_us: percentile(&lat, 99.0),
        });
    }
    Ok(rows)
}

/// The headline run under `taskset -c 0` and `taskset -c 0,1`, alternating.
pub fn scaling(env: &Env, s: &Sizes) -> anyhow::Result<Result<Scaling, String>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Ok(Err(format!("skipped: {cores} core available")));
    }
    if Command::new("taskset").arg("-V").output().is_err() {
        return Ok(Err("skipped: `taskset` (util-linux) is not installed".into()));
    }
    let input = env.input(s.records)?;
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for round in 0..s.scaling_rounds {
        let order = if round % 2 == 0 { ["0", "0,1"] } else { ["0,1", "0"] };
        for cpus in order {
            let r = env.score(&input, None, Some(cpus))?;
            progress!("scaling round {}: taskset -c {cpus}: {:.2} s", round + 1, r.wall.as_secs_f64());
            if cpus == "0" { &mut one } else { &mut two }.push(r.wall.as_secs_f64());
        }
    }
    Ok(Ok(Scaling {
        records: s.records,
        rounds: s.scaling_rounds,
        one_core_s: median(&one),
        two_cores_s: median(&two),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_rate_from_vigils_summary() {
        let err = "scored 20000 requests in 0.31 s (64516 requests/s); 0 bad lines skipped\ndecisions: ...";
        assert_eq!(super::reported_rps(err), Some(64516.0));
        assert_eq!(super::reported_rps("nothing"), None);
    }
}
