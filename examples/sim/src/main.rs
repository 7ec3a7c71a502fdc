//! `vigil-sim simulate` writes a request log and its truth file;
//! `vigil-sim evaluate` scores verdicts against the truth.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use vigil_sim::{Scenario, Simulator, eval};

#[derive(Parser)]
#[command(name = "vigil-sim", about = "Distillation-campaign traffic with ground truth, and the evaluator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream request records (stdout or --out) and write the truth file.
    Simulate {
        /// default, low-and-slow, paraphrased, hydra, no-elicitation, full-size
        #[arg(long, default_value = "default")]
        preset: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Request log, or - for stdout.
        #[arg(long, default_value = "-")]
        out: String,
        /// Account -> benign or campaign (NDJSON). Never mixed into the log.
        #[arg(long)]
        truth: PathBuf,
        #[arg(long)]
        benign_accounts: Option<usize>,
        /// Total campaign accounts, spread over the preset's campaigns.
        #[arg(long)]
        campaign_accounts: Option<usize>,
        /// Total campaign requests, spread evenly over campaign accounts.
        #[arg(long)]
        campaign_requests: Option<u64>,
        #[arg(long)]
        days: Option<f64>,
        /// Print the resolved scenario as JSON and exit.
        #[arg(long)]
        show: bool,
    },
    /// Verdicts (from `vigil score`) + truth -> recall, FPR, precision, time to flag.
    Evaluate {
        #[arg(long, default_value = "-")]
        verdicts: String,
        #[arg(long)]
        truth: PathBuf,
        /// The default (docs/contract.md); never tuned per scenario.
        #[arg(long, default_value_t = 0.5)]
        flag_threshold: f64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate {
            preset,
            seed,
            out,
            truth,
            benign_accounts,
            campaign_accounts,
            campaign_requests,
            days,
            show,
        } => {
            let mut s = Scenario::preset(&preset, seed).ok_or_else(|| {
                anyhow::anyhow!("unknown preset {preset:?}; presets: {}", Scenario::PRESETS.join(", "))
            })?;
            if let Some(n) = benign_accounts {
                s.benign.accounts = n;
            }
            if let Some(d) = days {
                anyhow::ensure!(d > 0.0, "--days must be positive");
                let scale = d / s.days;
                s.days = d;
                s.release_day *= scale;
                for c in &mut s.campaigns {
                    c.start_day *= scale;
                    c.end_day *= scale;
                }
            }
            if let Some(n) = campaign_accounts {
                let total = s.campaign_accounts().max(1);
                for c in &mut s.campaigns {
                    c.accounts = (c.accounts * n).div_ceil(total);
                }
            }
            if let Some(r) = campaign_requests {
                let per = r as f64 / s.campaign_accounts().max(1) as f64;
                for c in &mut s.campaigns {
                    c.requests_per_account = per;
                }
            }
            if show {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            simulate(&s, &out, &truth)
        }
        Command::Evaluate { verdicts, truth, flag_threshold, format } => {
            let truth = eval::read_truth(BufReader::new(
                File::open(&truth).map_err(|e| anyhow::anyhow!("{}: {e}", truth.display()))?,
            ))?;
            let input: Box<dyn BufRead> = if verdicts == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                Box::new(BufReader::new(File::open(&verdicts).map_err(|e| anyhow::anyhow!("{verdicts}: {e}"))?))
            };
            let report = eval::evaluate(input, &truth, flag_threshold)?;
            match format {
                Format::Table => print!("{}", report.table()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
    }
}

fn simulate(s: &Scenario, out: &str, truth_path: &PathBuf) -> anyhow::Result<()> {
    let pop = vigil_sim::population(s);
    let mut truth =
        BufWriter::new(File::create(truth_path).map_err(|e| anyhow::anyhow!("{}: {e}", truth_path.display()))?);
    for t in pop.truth(s) {
        serde_json::to_writer(&mut truth, &t)?;
        truth.write_all(b"\n")?;
    }
    truth.flush()?;
    let sink: Box<dyn Write> = if out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(File::create(out).map_err(|e| anyhow::anyhow!("{out}: {e}"))?)
    };
    let mut w = BufWriter::with_capacity(1 << 16, sink);
    let tty = std::io::stderr().is_terminal();
    let mut n = 0u64;
    for r in Simulator::new(s, &pop) {
        serde_json::to_writer(&mut w, &r)?;
        if let Err(e) = w.write_all(b"\n") {
            // A closed pipe (`| head`) is a normal way to stop.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
        n += 1;
        if tty && n.is_multiple_of(500_000) {
            eprint!("\r{n} requests simulated");
        }
    }
    w.flush()?;
    if tty {
        eprint!("\r");
    }
    eprintln!(
        "simulated {n} requests from {} accounts ({} in campaigns) over {} days; truth in {}",
        pop.accounts.len(),
        s.campaign_accounts(),
        s.days,
        truth_path.display()
    );
    Ok(())
}
