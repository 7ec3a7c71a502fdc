//! vigil-bench: regenerates BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p vigil-bench -- --out BENCHMARKS.md          # full run (minutes; not in CI)
//! cargo run --release -p vigil-bench -- --quick --out /tmp/quick.md  # smoke sizes (seconds)
//! ```
//!
//! Every comparison runs both sides in the same process run, interleaved
//! (which side goes first alternates per batch or per round), and reports
//! medians and ratios. Progress goes to stderr; the report to `--out` and
//! stdout.

mod cluster;
mod e2e;
mod gateway;
mod instantiate;
mod languages;
mod loadgen;
mod native;
mod report;
mod stats;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use vigil_runtime::batch::Batch;
use vigil_runtime::batch::handles::Hasher64;
use vigil_runtime::config::EngineConfig;
use vigil_runtime::engine::Runtime;

const USAGE: &str =
    "usage: vigil-bench [--quick] [--out FILE] [--sections 1,2,3,4,5,6,7] [--vigil PATH] [--baseline PATH]

  --quick      small smoke sizes (seconds), to check the benchmark works
  --out FILE   where to write the report (default BENCHMARKS.md)
  --sections   which sections to run (default all): 1 native vs plugin,
               2 typed WIT vs JSON, 3 instantiation, 4 end to end,
               5 gateway latency (LiteLLM guardrail endpoint),
               6 cluster on NATS JetStream (needs nats-server),
               7 one detector in Rust, Python and JavaScript (builds the
               ports in examples/: componentize-py, pip-installed if
               missing; componentize-js with npm, left out without Node.js)
  --vigil PATH the vigil binary for section 4 (default: built with cargo)
  --baseline PATH another vigil binary (an older build, say) whose headline
               run is interleaved with this one's in section 4";

struct Args {
    quick: bool,
    out: PathBuf,
    sections: Vec<u8>,
    vigil: Option<PathBuf>,
    baseline: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        out: "BENCHMARKS.md".into(),
        sections: vec![1, 2, 3, 4, 5, 6, 7],
        vigil: None,
        baseline: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--out" => a.out = value()?.into(),
            "--vigil" => a.vigil = Some(value()?.into()),
            "--baseline" => a.baseline = Some(value()?.into()),
            "--sections" => {
                a.sections = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<u8>().ok().filter(|n| (1..=7).contains(n)))
                    .collect::<Option<_>>()
                    .ok_or("--sections takes numbers 1 to 7, comma-separated")?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// How much to run: the full sizes, or smoke sizes for `--quick`.
struct Plan {
    /// Section 1: batches of `batch_size` per workload, the first `warmup` untimed.
    batch_size: usize,
    batches: usize,
    warmup: usize,
    /// Section 2: rounds over the first `transport_batches` batches.
    transport_rounds: usize,
    transport_batches: usize,
    instantiate: instantiate::Counts,
    e2e: e2e::Sizes,
    gateway: gateway::Sizes,
    cluster: cluster::Sizes,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            batch_size: 1024,
            batches: 7,
            warmup: 1,
            transport_rounds: 20,
            transport_batches: 4,
            instantiate: instantiate::Counts { cold: 2, cache: 5, prelinked: 50 },
            e2e: e2e::Sizes {
                records: 20_000,
                runs: 2,
                sweep: vec![
                    (1, 1_000),
                    (8, 4_000),
                    (64, 20_000),
                    (256, 20_000),
                    (1024, 20_000),
                    (4096, 20_000),
                    (8192, 20_000),
                ],
                sweep_rounds: 1,
                latency_records: 20_000,
                min_batches: 5,
                max_batches: 200,
                scaling_rounds: 1,
            },
            gateway: gateway::Sizes { rates: vec![500.0], rounds: 1, slice: std::time::Duration::from_secs(2) },
            cluster: cluster::Sizes { days: 0.1, partitions: 8, nodes: vec![1, 2] },
        }
    } else {
        Plan {
            batch_size: 1024,
            batches: 102,
            warmup: 2,
            transport_rounds: 200,
            transport_batches: 16,
            instantiate: instantiate::Counts { cold: 5, cache: 50, prelinked: 500 },
            e2e: e2e::Sizes {
                records: 1_000_000,
                runs: 3,
                sweep: vec![
                    (1, 20_000),
                    (8, 100_000),
                    (64, 500_000),
                    (256, 1_000_000),
                    (1024, 1_000_000),
                    (4096, 1_000_000),
                    (8192, 1_000_000),
                ],
                sweep_rounds: 2,
                latency_records: 200_000,
                min_batches: 30,
                max_batches: 2_000,
                scaling_rounds: 3,
            },
            gateway: gateway::Sizes {
                rates: vec![500.0, 2000.0, 4000.0],
                rounds: 4,
                slice: std::time::Duration::from_secs(5),
            },
            cluster: cluster::Sizes { days: 1.4, partitions: 32, nodes: vec![1, 2, 3] },
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("vigil-bench: {e}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let plan = plan(args.quick);
    let on = |n: u8| args.sections.contains(&n);
    let config = vigil_runtime::Config::default();
    let tmp = tempfile::Builder::new().prefix("vigil-bench-").tempdir()?;
    let cache_dir = tmp.path().join("cache");
    let mut report = report::Report { quick: args.quick, ..Default::default() };

    // First, so a build never runs while something is being timed.
    let vigil = if on(4) || on(5) || on(6) { Some(e2e::locate_vigil(args.vigil.clone())?) } else { None };

    let bundled = vigil_bundle::files();
    let hasher = Hasher64::new(config.handle_key().expect("default key"));
    let batch = |records| Arc::new(Batch::new(records, &hasher));
    let mut load = loadgen::Gen::new(1);
    let needed = if on(1) || on(7) { plan.batches } else { plan.transport_batches };
    let batches: Vec<Arc<Batch>> = (0..needed).map(|_| batch(load.records(plan.batch_size))).collect();

    let workloads = if on(1) || on(7) {
        progress!("simulating {} records of vigil-sim's default scenario", plan.batches * plan.batch_size);
        let sim = loadgen::simulated(plan.batches * plan.batch_size, 6 * 3_600_000);
        vec![
            native::Workload {
                name: "Load",
                about: "The `examples/gen_log.py` port: 470-byte prompts, 20,000 accounts",
                batches: batches.clone(),
            },
            native::Workload {
                name: "Simulated campaigns",
                about: "vigil-sim's default scenario from hour 6, when the campaigns start: traffic the detectors are tuned to find",
                batches: sim.chunks(plan.batch_size).map(|c| batch(c.to_vec())).collect(),
            },
        ]
    } else {
        Vec::new()
    };
    if on(1) {
        let engine = EngineConfig { cache_dir: cache_dir.clone(), ..Default::default() };
        let runtime = Runtime::with_config(&engine, true)?;
        report.native = Some(native::run(&config, &runtime, &bundled, &workloads, plan.warmup)?);
    }
    if on(2) {
        report.transport = Some(transport::run(&batches[..plan.transport_batches], plan.transport_rounds)?);
    }
    if on(3) {
        let plugin = bundled.iter().max_by_key(|p| p.wasm.len()).expect("bundled plugins");
        let dir = tmp.path().join("instantiate-cache");
        report.instantiate = Some(instantiate::run(&config, plugin, &dir, &plan.instantiate)?);
    }
    if let (true, Some(vigil)) = (on(4), &vigil) {
        let env = e2e::Env {
            vigil: vigil.clone(),
            baseline: args.baseline.clone(),
            dir: tmp.path().to_path_buf(),
            cache_dir: cache_dir.clone(),
        };
        report.headline = Some(e2e::headline(&env, &config, &plan.e2e)?);
        report.sweep = Some(e2e::sweep(&env, &config, &plan.e2e)?);
        report.scaling = Some(e2e::scaling(&env, &plan.e2e)?);
    }

    if on(5) {
        progress!("gateway latency");
        report.gateway = Some(gateway::run(&plan.gateway, vigil.as_deref().expect("located above"))?);
    }

    if on(6) {
        let vigil = vigil.as_deref().expect("located above");
        report.cluster = Some(cluster::run(vigil, tmp.path(), &cache_dir, &plan.cluster)?);
    }

    if on(7) {
        let engine = EngineConfig { cache_dir: cache_dir.clone(), ..Default::default() };
        let runtime = Runtime::with_config(&engine, true)?;
        let scratch = tmp.path().join("languages");
        report.languages = Some(languages::run_all(&config, &runtime, &bundled, &workloads, plan.warmup, &scratch)?);
    }

    let text = report.markdown();
    std::fs::write(&args.out, &text).map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
    print!("{text}");
    progress!("wrote {}", args.out.display());
    Ok(())
}
