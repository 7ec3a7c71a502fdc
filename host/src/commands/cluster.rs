//! `vigil cluster setup`, `vigil publish` and `vigil cluster verdicts`: the
//! producer and consumer ends of a cluster (docs/cluster.md). The nodes
//! themselves are `vigil serve --source nats://...`.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer;
use futures::StreamExt;
use vigil_runtime::config::{BadInputPolicy, Config};

use crate::cluster::{VERDICTS, publish, setup};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create the streams and buckets (idempotent) and print the
    /// nats-server mapping that partitions gateways' records.
    Setup {
        #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// Fixed for the cluster's life: choose it large (nodes come and
        /// go in units of a partition).
        #[arg(long, default_value_t = 64)]
        partitions: u32,
    },
    /// Read the verdict stream from its start into NDJSON, one verdict per
    /// record id (repeats counted, not written).
    Verdicts {
        #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
        #[arg(long, value_name = "FILE", default_value = "-")]
        out: String,
        /// Wait until this many distinct records have a verdict...
        #[arg(long)]
        expect: Option<u64>,
        /// ...or until nothing new came for this long.
        #[arg(long, default_value_t = 5_000)]
        idle_ms: u64,
    },
}

#[derive(clap::Args)]
pub struct PublishArgs {
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// NDJSON request records, or - for stdin.
    #[arg(long, value_name = "FILE", default_value = "-")]
    input: String,
    #[arg(long, value_parser = str::parse::<BadInputPolicy>, value_name = "skip|fail")]
    on_bad_input: Option<BadInputPolicy>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Setup { nats, partitions } => runtime()?.block_on(async {
            setup::ensure(&setup::connect(&nats).await?, partitions).await?;
            eprintln!("vigil: cluster ready on {nats} with {partitions} partitions");
            print!("{}", setup::mapping(partitions));
            Ok(ExitCode::SUCCESS)
        }),
        Command::Verdicts { nats, out, expect, idle_ms } => runtime()?.block_on(verdicts(&nats, &out, expect, idle_ms)),
    }
}

pub fn publish(config: Config, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let input: Box<dyn BufRead> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, f))
    };
    let on_bad = args.on_bad_input.unwrap_or(config.scoring.on_bad_input);
    runtime()?.block_on(async {
        let c = setup::open(&args.nats).await?;
        let started = Instant::now();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = indicatif::ProgressBar::new_spinner();
        if !tty {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let done = publish::run(&c, input, &config.input, on_bad, |n| {
            bar.set_message(format!("{n} records published"));
            bar.tick();
        })
        .await?;
        bar.finish_and_clear();
        let s = started.elapsed().as_secs_f64();
        eprintln!(
            "vigil: published {} records ({} already in the stream, {} bad) to {} partitions in {s:.1} s",
            done.stored, done.duplicates, done.bad, c.partitions
        );
        Ok(if done.bad > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}

async fn verdicts(url: &str, out: &str, expect: Option<u64>, idle_ms: u64) -> anyhow::Result<ExitCode> {
    let js = setup::connect(url).await?;
    let stream = js.get_stream(VERDICTS).await.context("no verdict stream: run `vigil cluster setup` first")?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut w: Box<dyn Write> = if out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {out}"))?))
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut repeats = 0u64;
    let idle = Duration::from_millis(idle_ms);
    loop {
        if expect.is_some_and(|n| seen.len() as u64 >= n) {
            break;
        }
        let m = match tokio::time::timeout(idle, messages.next()).await {
            Ok(Some(m)) => m.context("reading verdicts")?,
            Ok(None) | Err(_) => break,
        };
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
        let id = match id {
            Some(id) => id,
            None => serde_json::from_slice::<serde_json::Value>(&m.payload)?["id"].as_str().unwrap_or("").to_string(),
        };
        if seen.insert(id) {
            w.write_all(&m.payload)?;
            w.write_all(b"\n")?;
        } else {
            repeats += 1;
        }
    }
    w.flush()?;
    eprintln!("vigil: {} verdicts, {repeats} repeated", seen.len());
    let short = expect.is_some_and(|n| (seen.len() as u64) < n);
    if short {
        eprintln!(
            "vigil: expected {} verdicts, got {} before {idle_ms} ms passed with none",
            expect.unwrap_or(0),
            seen.len()
        );
    }
    Ok(if short { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
