//! The `vigil` command line: parse arguments, load the config, apply flags
//! and the environment over it, run a command. Flags override the config
//! file; defaults make the file optional. Environment variables are read
//! here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_runtime::config::Config;

use crate::commands;

#[derive(Parser)]
#[command(name = "vigil", version, about = "Score LLM API request logs with sandboxed WebAssembly detectors")]
pub struct Cli {
    /// Configuration file (TOML); every setting has a default.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter (tracing syntax), e.g. `info` or `warn,vigil=debug`.
    #[arg(long, global = true, env = "VIGIL_LOG", default_value = "warn")]
    log: String,
    /// Where compiled plugins are cached (default `$XDG_CACHE_HOME/vigil`
    /// or `~/.cache/vigil`; `[engine] cache = false` turns caching off).
    #[arg(long, global = true, env = "VIGIL_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Name JIT-compiled plugin functions for `perf` (see BENCHMARKS.md).
    #[arg(long, global = true, env = "VIGIL_PERFMAP")]
    perfmap: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score NDJSON request records into NDJSON verdicts, in input order.
    Score(commands::score::Args),
    /// HTTP scoring service; watches DIR and hot-reloads plugins.
    Serve(commands::serve::Args),
    /// The main job on an embedded default: simulate, score, evaluate, report,
    /// then hot-patch a detector through the reload path of `vigil serve`.
    Demo {
        /// Where the report, cases and working files go.
        #[arg(long, default_value = "vigil-demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Start a plugin project that builds on its own: a Rust detector with
    /// native unit tests, its manifest, and the SDK.
    New(commands::new::Args),
    /// Run plugins on fixture records and check what they say (per record
    /// or per account); a diff for each miss, non-zero exit on any.
    Test(commands::test::Args),
    /// What a candidate plugin set would have done to a log, beside the
    /// baseline: accounts and clusters newly and no longer flagged.
    Replay(commands::replay::Args),
    /// Validate a plugin: component and world, manifest, init, a smoke batch.
    Check {
        /// The plugin's NAME.wasm; its NAME.toml must sit beside it.
        plugin: PathBuf,
    },
    /// Several vigil processes on NATS JetStream: set-up, verdicts.
    #[command(subcommand)]
    Cluster(commands::cluster::Command),
    /// Publish NDJSON request records to a cluster's record stream, each
    /// on its account's partition (record id = message id).
    Publish(commands::cluster::PublishArgs),
    /// Write NAME.key (secret) and NAME.pub for signing plugins.
    Keygen { name: PathBuf },
    /// Sign NAME.wasm together with its manifest NAME.toml and its name:
    /// writes NAME.sig (again, to replace an older signature format). Given
    /// a directory, signs every plugin in it.
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
    config.engine.perfmap |= cli.perfmap;
    if let Some(d) = cli.cache_dir {
        config.engine.cache_dir = d;
    } else if config.engine.cache_dir.as_os_str().is_empty() {
        config.engine.cache_dir = default_cache_dir().unwrap_or_default();
    }
    match cli.command {
        Command::Score(args) => commands::score::run(config, args),
        Command::Serve(args) => commands::serve::run(config, args),
        Command::Demo { out, seed } => {
            commands::demo::run(&config, &out, seed)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { plugin } => commands::check::run(&config, &plugin),
        Command::Cluster(cmd) => commands::cluster::run(cmd),
        Command::Publish(args) => commands::cluster::publish(config, args),
        Command::Keygen { name } => commands::keys::keygen(&name),
        Command::Sign { key, plugin } => commands::keys::sign(&key, &plugin),
        Command::New(a) => commands::new::run(&a),
        Command::Test(a) => commands::test::run(&config, &a),
        Command::Replay(a) => commands::replay::run(&config, &a),
        Command::Bundled { out, key } => commands::bundled::write(&out, key.as_deref()),
    }
}

/// `$XDG_CACHE_HOME/vigil`, else `~/.cache/vigil`.
fn default_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("XDG_CACHE_HOME").map(|d| d.join("vigil")).or_else(|| env("HOME").map(|d| d.join(".cache").join("vigil")))
}
