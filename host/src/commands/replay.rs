//! `vigil replay --input LOG --candidate DIR [--baseline DIR]`: what a
//! candidate plugin set would have done to a log, against the baseline set
//! (the bundled one unless given): accounts and campaign clusters newly
//! flagged and no longer flagged, in all and per detector, with examples.
//! The candidate is the baseline with the plugins of `--candidate` laid
//! over it (a hot-patch directory holds just the patched plugin). Each side
//! scores the whole log through the same path as `vigil score`, from empty
//! host state or from `--state-dir`'s snapshot (read once); nothing is saved.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use vigil_runtime::config::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::plugin::files::{PluginFiles, read_dir};
use vigil_runtime::registry::load::{self, PluginSet};
use vigil_runtime::score::combine::Verdict;
use vigil_runtime::score::compare::{Comparison, Side};
use vigil_runtime::score::pipeline::{Scorer, StreamOptions, score_stream};
use vigil_runtime::state::{STATE_FILE, StateStore};

#[derive(clap::Args)]
pub struct Args {
    /// The log: NDJSON request records (an exchange log, `vigil-sim
    /// simulate` output, the last hours of traffic).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// The candidate's plugins (NAME.wasm + NAME.toml), each replacing the
    /// baseline's plugin of that name or joining the set.
    #[arg(long, value_name = "DIR")]
    candidate: PathBuf,
    /// The baseline set (default: the bundled detectors).
    #[arg(long, value_name = "DIR")]
    baseline: Option<PathBuf>,
    /// Start both sides from this host state (DIR/state.bin, as `vigil
    /// serve --state-dir` saves it); read once, never written.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Accounts shown each way.
    #[arg(long, default_value_t = 10)]
    examples: usize,
    /// Also write the whole comparison as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let sets = Sets::read(config, args.baseline.as_deref(), &args.candidate)?;
    // Read once, so both sides start from the same state even if a server
    // snapshots over the file meanwhile; never written, never moved.
    let state = match &args.state_dir {
        Some(d) => {
            let path = d.join(STATE_FILE);
            Some(std::fs::read(&path).with_context(|| format!("--state-dir: {}", path.display()))?)
        }
        None => None,
    };
    let side = |candidate| replay(config, &sets, candidate, &args.input, state.as_deref(), true);
    let (baseline, candidate) = (side(false)?, side(true)?);
    let c = Comparison::new(&baseline, &candidate, args.examples);
    println!(
        "replayed {} requests: baseline {}; candidate {}\n",
        c.requests,
        sets.describe(false),
        sets.describe(true)
    );
    print!("{}", c.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&c)?).with_context(|| format!("{}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The two sets' files: the baseline's, and the candidate's overlay.
pub struct Sets {
    baseline: Vec<PluginFiles>,
    baseline_dir: Option<PathBuf>,
    candidate: Vec<PluginFiles>,
    candidate_dir: PathBuf,
}

impl Sets {
    /// Reads both directories; any plugin that cannot be read stops it.
    pub fn read(config: &Config, baseline: Option<&Path>, candidate: &Path) -> anyhow::Result<Self> {
        let read = |dir: &Path| -> anyhow::Result<Vec<PluginFiles>> {
            let (files, failures) =
                read_dir(dir, &config.plugin_files).with_context(|| format!("plugin directory {}", dir.display()))?;
            if let Some(e) = failures.first() {
                bail!("{}: plugin {}: {}: {}", dir.display(), e.plugin, e.kind, e.message);
            }
            Ok(files)
        };
        let base = match baseline {
            Some(d) => read(d)?,
            None => vigil_bundle::files(),
        };
        let cand = read(candidate)?;
        if cand.is_empty() {
            bail!("{}: no NAME.wasm + NAME.toml in it: nothing to compare", candidate.display());
        }
        Ok(Sets {
            baseline: base,
            baseline_dir: baseline.map(Path::to_path_buf),
            candidate: cand,
            candidate_dir: candidate.to_path_buf(),
        })
    }

    fn describe(&self, candidate: bool) -> String {
        let base = self.baseline_dir.as_ref().map_or("the bundled set".into(), |d| d.display().to_string());
        if !candidate {
            return format!("{base} ({} plugins)", self.baseline.len());
        }
        let names: BTreeSet<&str> = self.candidate.iter().map(|f| f.name.as_str()).collect();
        format!(
            "{base} with {} from {}",
            names.into_iter().collect::<Vec<_>>().join(", "),
            self.candidate_dir.display()
        )
    }

    /// Loads one side; a plugin that does not load stops the replay (a
    /// comparison with a detector missing would mislead).
    fn load(
        &self,
        runtime: &Runtime,
        config: &Config,
        state: &StateStore,
        candidate: bool,
    ) -> anyhow::Result<PluginSet> {
        let trust = crate::plugins::trust(config)?;
        let replaced: BTreeSet<&str> =
            if candidate { self.candidate.iter().map(|f| f.name.as_str()).collect() } else { BTreeSet::new() };
        let base: Vec<PluginFiles> =
            self.baseline.iter().filter(|f| !replaced.contains(f.name.as_str())).cloned().collect();
        let mut set = load::load(runtime, config, state, base, &trust, self.baseline_dir.as_deref());
        if candidate {
            let over = load::load(runtime, config, state, self.candidate.clone(), &trust, Some(&self.candidate_dir));
            set.workers.extend(over.workers);
            set.failures.extend(over.failures);
            set.workers.sort_by(|a, b| a.plugin.name.cmp(&b.plugin.name));
        }
        if let Some(e) = set.failures.first() {
            let side = if candidate { "candidate" } else { "baseline" };
            bail!("{side}: plugin {} not loaded: {}: {}", e.plugin, e.kind, e.message);
        }
        Ok(set)
    }
}

/// Scores the whole log with one side, from empty host state or from
/// `state` (a snapshot's bytes), and takes what it flagged.
pub fn replay(
    config: &Config,
    sets: &Sets,
    candidate: bool,
    input: &Path,
    state: Option<&[u8]>,
    progress: bool,
) -> anyhow::Result<Side> {
    let runtime = Runtime::with_config(&config.engine, true)?;
    let state = match state {
        Some(bytes) => StateStore::from_bytes(bytes, config.state.clone())
            .map_err(|e| anyhow::anyhow!("--state-dir: the host state snapshot does not load: {e}"))?,
        None => StateStore::new(config.state.clone()),
    };
    let scorer = Scorer::new(sets.load(&runtime, config, &state, candidate)?, config);
    let reader = BufReader::with_capacity(1 << 16, File::open(input).with_context(|| format!("{}", input.display()))?);
    let side = std::sync::Mutex::new(Side::new(config.scoring.flag_threshold, config.server.max_cases));
    let pb = (progress && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        let which = if candidate { "candidate" } else { "baseline" };
        pb.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {which}: {{human_pos}} requests ({{per_sec}})"
            ))
            .expect("valid template"),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    });
    let on_progress = |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    let sink = VerdictSink { buf: Vec::new(), side: &side };
    let summary = score_stream(&scorer, reader, sink, &StreamOptions::from_config(config), &|_| {}, &on_progress)?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if summary.bad_lines > 0 {
        eprintln!("vigil: {} bad lines in {} skipped (vigil score reports each)", summary.bad_lines, input.display());
    }
    Ok(side.into_inner().expect("no panics while held"))
}

/// Takes the NDJSON verdicts `score_stream` writes into a [`Side`].
struct VerdictSink<'a> {
    buf: Vec<u8>,
    side: &'a std::sync::Mutex<Side>,
}

impl Write for VerdictSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        let Some(end) = self.buf.iter().rposition(|b| *b == b'\n') else { return Ok(data.len()) };
        let mut side = self.side.lock().expect("no panics while held");
        for line in self.buf[..end].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Verdict = serde_json::from_slice(line).map_err(std::io::Error::other)?;
            side.observe(&v);
        }
        self.buf.drain(..=end);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
