//! The `vigil` command line: parse arguments, load the config, call the
//! library. Flags override the config file; defaults make the file optional.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{BadInputPolicy, Config};
use crate::engine::Runtime;
use crate::pipeline::{Scorer, StreamOptions, Summary, score_stream};
use crate::registry;
use crate::state::StateStore;

#[derive(Parser)]
#[command(name = "vigil", version, about = "Score LLM API request logs with sandboxed WebAssembly detectors")]
pub struct Cli {
    /// Configuration file (TOML); every setting has a default.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter (tracing syntax), e.g. `info` or `warn,vigil=debug`.
    #[arg(long, global = true, env = "VIGIL_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score NDJSON request records into NDJSON verdicts, in input order.
    Score {
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
        /// What to do with a bad input line.
        #[arg(long, value_enum)]
        on_bad_input: Option<BadInputPolicy>,
        /// No progress display, even on a terminal.
        #[arg(long)]
        quiet: bool,
        /// Write per-account and per-cluster cases (JSON) of flagged traffic.
        #[arg(long, value_name = "FILE")]
        cases: Option<PathBuf>,
        /// Score with the plugins that loaded even if some could not
        /// (each is reported); without it, any plugin that cannot load
        /// stops the run before anything is scored.
        #[arg(long)]
        allow_partial: bool,
    },
    /// HTTP scoring service; watches DIR and hot-reloads plugins.
    Serve {
        /// Plugin directory of NAME.wasm + NAME.toml pairs (watched).
        #[arg(long, value_name = "DIR")]
        plugins: PathBuf,
        /// Address to listen on (default from config: 127.0.0.1:8787).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where host state snapshots and the audit log live.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// The main job on an embedded default: simulate, score, evaluate, report,
    /// then hot-patch a detector through the reload path of `vigil serve`.
    Demo {
        /// Where the report, cases and working files go.
        #[arg(long, default_value = "vigil-demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Validate a plugin: component and world, manifest, init, a smoke batch.
    Check {
        /// The plugin's NAME.wasm; its NAME.toml must sit beside it.
        plugin: PathBuf,
    },
    /// Write NAME.key (secret) and NAME.pub for signing plugins.
    Keygen { name: PathBuf },
    /// Sign PLUGIN.wasm together with its manifest PLUGIN.toml: writes PLUGIN.sig.
    Sign {
        #[arg(long, value_name = "NAME.key")]
        key: PathBuf,
        plugin: PathBuf,
    },
    /// Write the bundled plugins (NAME.wasm + NAME.toml) into a directory.
    /// This binary trusts them as they are; sign them with --key to ship
    /// them to hosts that require signatures.
    Bundled {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also sign each one (writes NAME.sig).
        #[arg(long, value_name = "NAME.key")]
        key: Option<PathBuf>,
    },
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    match cli.command {
        Command::Score { plugins, input, output, batch_size, on_bad_input, quiet, cases, allow_partial } => {
            if let Some(b) = batch_size {
                config.scoring.batch_size = b;
            }
            if let Some(p) = on_bad_input {
                config.scoring.on_bad_input = p;
            }
            config.validate()?;
            score(&config, plugins, &input, &output, quiet, cases.as_deref(), allow_partial)
        }
        Command::Serve { plugins, listen, state_dir } => {
            if let Some(d) = state_dir {
                config.server.state_dir = d;
            }
            let listen = listen.unwrap_or_else(|| config.server.listen.clone());
            serve(config, &plugins, &listen)
        }
        Command::Demo { out, seed } => {
            crate::demo::run(&config, &out, seed)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { plugin } => {
            let mut out = std::io::stdout();
            let passed = crate::check::check(&plugin, &config, &mut out)?;
            if passed {
                writeln!(out, "{} is a valid vigil plugin", plugin.display())?;
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("vigil: {} is not a valid vigil plugin (see above)", plugin.display());
                Ok(ExitCode::from(1))
            }
        }
        Command::Keygen { name } => {
            let (secret, public) = crate::trust::keygen(&name).map_err(|e| anyhow::anyhow!(e))?;
            println!("wrote {} (keep it secret) and {}", secret.display(), public.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign { key, plugin } => {
            let sig = crate::trust::sign(&key, &plugin).map_err(|e| anyhow::anyhow!(e))?;
            println!("wrote {}", sig.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundled { out, key } => {
            std::fs::create_dir_all(&out)?;
            for f in registry::bundled() {
                let wasm = out.join(format!("{}.wasm", f.name));
                std::fs::write(&wasm, &f.wasm)?;
                std::fs::write(out.join(format!("{}.toml", f.name)), &f.manifest)?;
                match &key {
                    Some(k) => {
                        let sig = crate::trust::sign(k, &wasm).map_err(|e| anyhow::anyhow!(e))?;
                        println!("{} (signed: {})", wasm.display(), sig.display());
                    }
                    None => println!("{}", wasm.display()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn score(
    config: &Config,
    plugins: Option<PathBuf>,
    input: &str,
    output: &str,
    quiet: bool,
    cases: Option<&std::path::Path>,
    allow_partial: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::with_config(&config.engine, true)?;
    let state = StateStore::new(config.state.clone());
    let set = registry::load_dir(&runtime, config, &state, plugins.as_deref())?;
    for e in &set.failures {
        eprintln!("vigil: plugin {} not loaded: {}: {}", e.plugin, e.kind, e.message);
    }
    let where_ = plugins.map_or("the bundled set".to_string(), |p| p.display().to_string());
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
    let scorer = Scorer::new(set, config);

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
    let progress = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {human_pos} requests scored ({per_sec}, {elapsed})")
                .expect("valid template"),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    });
    let opts = StreamOptions {
        batch_size: config.scoring.batch_size,
        on_bad_input: config.scoring.on_bad_input,
        input: config.input.clone(),
        in_flight: config.scoring.in_flight,
        cases: cases
            .map(|_| std::sync::Arc::new(std::sync::Mutex::new(crate::cases::CaseBook::new(config.server.max_cases)))),
    };
    let pb = progress.clone();
    let on_bad = move |b: &crate::BadInput| match &pb {
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
    if let (Some(path), Some(book)) = (cases, &opts.cases) {
        let c = book.lock().unwrap_or_else(|e| e.into_inner()).cases();
        std::fs::write(path, serde_json::to_vec_pretty(&c)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        eprintln!("cases: {} accounts, {} clusters -> {}", c.accounts.len(), c.clusters.len(), path.display());
    }
    if summary.requests == 0 && summary.bad_lines == 0 {
        eprintln!("vigil: the input was empty: nothing to score");
    }
    if summary.requests == 0 && summary.bad_lines > 0 {
        anyhow::bail!("nothing scored: all {} input lines were bad", summary.bad_lines);
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(config: Config, plugins: &std::path::Path, listen: &str) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    if !plugins.is_dir() {
        anyhow::bail!("plugin directory {} does not exist", plugins.display());
    }
    // Signals are caught from before the server announces itself, so a
    // supervisor's SIGTERM right after "listening" still drains and saves.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut term, mut int, mut hup) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let server = crate::serve::Server::start(config, plugins, listen)?;
    let live = server.registry.snapshot().plugins.len();
    eprintln!("vigil: listening on {} with {live} plugins from {}", server.addr, plugins.display());
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    let _ = server.reload.send(crate::reload::Trigger::Now("SIGHUP"));
                }
            }
        }
    });
    eprintln!("vigil: draining and saving state");
    // A supervisor must see a failed final save: the state since the last
    // snapshot is lost.
    server.stop()?;
    Ok(ExitCode::SUCCESS)
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
