//! `vigil score`: NDJSON request records in, NDJSON verdicts out in input
//! order, a summary on stderr, progress on a terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use vigil_runtime::config::{BadInputPolicy, Config};
use vigil_runtime::engine::Runtime;
use vigil_runtime::error::BadInput;
use vigil_runtime::registry::load::PluginSet;
use vigil_runtime::score::cases::CaseBook;
use vigil_runtime::score::pipeline::{Scorer, StreamOptions, Summary, score_stream};
use vigil_runtime::state::{STATE_FILE, StateStore};
use vigil_runtime::util::lock;

#[derive(clap::Args)]
pub struct Args {
    /// Plugin directory of NAME.wasm + NAME.toml pairs (default: the
    /// bundled detectors).
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Input file, or - for stdin.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output file, or - for stdout.
    #[arg(long, default_value = "-")]
    output: String,
    #[arg(long)]
    batch_size: Option<usize>,
    /// What to do with a bad input line: skip (report it, score the rest)
    /// or fail (stop at it).
    #[arg(long, value_parser = str::parse::<BadInputPolicy>, value_name = "skip|fail")]
    on_bad_input: Option<BadInputPolicy>,
    /// No progress display, even on a terminal.
    #[arg(long)]
    quiet: bool,
    /// Write per-account and per-cluster cases (JSON) of flagged traffic.
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    /// Score with the plugins that loaded even if some could not (each is
    /// reported); without it, any plugin that cannot load stops the run
    /// before anything is scored.
    #[arg(long)]
    allow_partial: bool,
    /// Start from the host state in DIR/state.bin if there is one, and save
    /// the state there at the end: the file `vigil serve --state-dir` uses,
    /// so a log scored here warms a server (or the next run).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub fn run(mut config: Config, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(b) = args.batch_size {
        config.scoring.batch_size = b;
    }
    if let Some(p) = args.on_bad_input {
        config.scoring.on_bad_input = p;
    }
    config.validate()?;
    let runtime = Runtime::with_config(&config.engine, true)?;
    let state_path = args.state_dir.as_ref().map(|d| d.join(STATE_FILE));
    let state = match &state_path {
        Some(path) => {
            let (state, corrupt) = StateStore::restore_or_new(path, config.state.clone());
            if let Some(c) = corrupt {
                eprintln!("vigil: host state not restored: {c}");
            }
            state
        }
        None => StateStore::new(config.state.clone()),
    };
    let set = crate::plugins::plugin_set(&runtime, &config, &state, args.plugins.as_deref())?;
    let where_ = args.plugins.as_ref().map_or("the bundled set".to_string(), |p| p.display().to_string());
    refuse_partial(&set, &where_, args.allow_partial)?;
    let scorer = Scorer::new(set, &config);
    let (reader, writer) = open(&args.input, &args.output)?;
    let progress = (!args.quiet && std::io::stderr().is_terminal()).then(spinner);
    let opts = StreamOptions {
        cases: args.cases.as_ref().map(|_| Arc::new(Mutex::new(CaseBook::new(config.server.max_cases)))),
        ..StreamOptions::from_config(&config)
    };
    let pb = progress.clone();
    let on_bad = move |b: &BadInput| match &pb {
        Some(pb) => pb.println(format!("bad input: {b}")),
        None => eprintln!("bad input: {b}"),
    };
    let pb = progress.clone();
    let on_progress = move |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    let result = score_stream(&scorer, reader, writer, &opts, &on_bad, &on_progress);
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let summary = result?;
    print_summary(&summary);
    if let (Some(path), Some(book)) = (&args.cases, &opts.cases) {
        write_cases(path, &lock(book))?;
    }
    if let Some(path) = &state_path {
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))
            .and_then(|()| state.save(path))
            .map_err(|e| anyhow::anyhow!("saving host state to {}: {e}", path.display()))?;
    }
    if summary.requests == 0 && summary.bad_lines == 0 {
        eprintln!("vigil: the input was empty: nothing to score");
    }
    if summary.requests == 0 && summary.bad_lines > 0 {
        anyhow::bail!("nothing scored: all {} input lines were bad", summary.bad_lines);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports every plugin that did not load; refuses to go on without all of
/// them unless told to (scoring with fewer detectors than asked for must
/// never pass for a full run).
fn refuse_partial(set: &PluginSet, where_: &str, allow_partial: bool) -> anyhow::Result<()> {
    for e in &set.failures {
        eprintln!("vigil: plugin {} not loaded: {}: {}", e.plugin, e.kind, e.message);
    }
    if set.workers.is_empty() {
        anyhow::bail!("no plugin could be loaded from {where_}: refusing to score with no detectors");
    }
    if !set.failures.is_empty() && !allow_partial {
        anyhow::bail!(
            "{} of {} plugins in {where_} could not be loaded (see above): nothing scored; \
             fix them, or pass --allow-partial to score with the {} that loaded",
            set.failures.len(),
            set.failures.len() + set.workers.len(),
            set.workers.len()
        );
    }
    Ok(())
}

type Io = (Box<dyn BufRead + Send>, Box<dyn Write + Send>);

fn open(input: &str, output: &str) -> anyhow::Result<Io> {
    let reader: Box<dyn BufRead + Send> = if input == "-" {
        Box::new(BufReader::with_capacity(1 << 16, std::io::stdin()))
    } else {
        let f = File::open(input).map_err(|e| anyhow::anyhow!("input {input}: {e}"))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let writer: Box<dyn Write + Send> = if output == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(File::create(output).map_err(|e| anyhow::anyhow!("output {output}: {e}"))?)
    };
    Ok((reader, writer))
}

fn spinner() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} requests scored ({per_sec}, {elapsed})")
            .expect("valid template"),
    );
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

fn write_cases(path: &Path, book: &CaseBook) -> anyhow::Result<()> {
    let c = book.cases();
    std::fs::write(path, serde_json::to_vec_pretty(&c)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    eprintln!("cases: {} accounts, {} clusters -> {}", c.accounts.len(), c.clusters.len(), path.display());
    Ok(())
}

fn print_summary(s: &Summary) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(
        e,
        "scored {} requests in {:.2} s ({:.0} requests/s); {} bad lines skipped",
        s.requests,
        s.elapsed.as_secs_f64(),
        s.requests_per_sec(),
        s.bad_lines
    );
    let _ = writeln!(e, "decisions: allow {}, flag {}, block {}", s.allow, s.flag, s.block);
    let _ = writeln!(e, "{:<32} {:>9} {:>8} {:>10} {:>12}", "plugin", "batches", "errors", "busy s", "ms/batch");
    for p in &s.plugins {
        let per = if p.batches > 0 { p.busy.as_secs_f64() * 1e3 / p.batches as f64 } else { 0.0 };
        let name = format!("{}@{}", p.name, p.version);
        let _ = writeln!(e, "{name:<32} {:>9} {:>8} {:>10.2} {:>12.2}", p.batches, p.errors, p.busy.as_secs_f64(), per);
    }
}
