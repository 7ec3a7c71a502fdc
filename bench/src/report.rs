//! BENCHMARKS.md: the machine, one table per section, and how to profile.

use std::fmt::Write;

use crate::stats::thousands;
use crate::{e2e, instantiate, languages, native, transport};

#[derive(Default)]
pub struct Report {
    pub quick: bool,
    pub native: Option<Vec<native::Table>>,
    pub transport: Option<transport::Measured>,
    pub instantiate: Option<instantiate::Measured>,
    pub headline: Option<e2e::Headline>,
    pub sweep: Option<Vec<e2e::SweepRow>>,
    pub scaling: Option<Result<e2e::Scaling, String>>,
    pub gateway: Option<String>,
    pub cluster: Option<String>,
    pub languages: Option<languages::Measured>,
}

const INTRO: &str = "\
# Benchmarks

What running detectors as sandboxed WebAssembly plugins costs, measured
against the same detectors compiled natively, and what `vigil score`
sustains end to end. Regenerate this file with one command (several
minutes; it is not run in CI):

```sh
cargo run --release -p vigil-bench -- --out BENCHMARKS.md
cargo run --release -p vigil-bench -- --quick --out /tmp/BENCHMARKS-quick.md   # smoke sizes, seconds
```

Every comparison runs both sides in the same run of the program,
interleaved: on each batch (or round) the side that goes first alternates,
so machine noise lands on both. Numbers are medians over batches, rounds or
iterations; ratios are medians of the per-batch ratios. The input is load,
not ground truth: a Rust port of `examples/gen_log.py` (470-byte prompts,
20,000 accounts, one record in 50 with a reasoning-elicitation template);
section 1 also runs vigil-sim's campaign traffic, where the detectors fire.
The program is `bench/` (`vigil-bench`).
";

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .map_or("unknown".into(), |kb| format!("{:.1} GiB", kb / (1024.0 * 1024.0)));
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or("unknown".into(), |s| s.trim().to_string());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let mut s = String::from("| | |\n|---|---|\n");
    let rows = [
        ("date (UTC)", today()),
        ("cores (nproc)", nproc.to_string()),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", kernel),
        ("rustc", env!("BENCH_RUSTC_VERSION").to_string()),
        ("wasmtime", env!("BENCH_WASMTIME_VERSION").to_string()),
        ("commit", commit),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    s
}

/// Today's date in UTC, from the system clock (civil-from-days).
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn f1(x: f64) -> String {
    if x.is_finite() { format!("{x:.1}") } else { "-".into() }
}

fn f2(x: f64) -> String {
    if x.is_finite() { format!("{x:.2}") } else { "-".into() }
}

const CLUSTER: &str = "\n## 6. Cluster on NATS JetStream\n\n\
The distributed cost per record: 1, 2 and 3 `vigil serve --source nats://` nodes (docs/cluster.md) on this \
two-core machine, against one `vigil score` of the same log. More nodes on the same two cores add \
coordination, not cores: the scaling past this machine is a model in docs/cluster.md, labelled so.\n\n";

const NOT_RUN: &str = "_Not run (see `--sections`)._\n";

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::from(INTRO);
        if self.quick {
            s.push_str(
                "\n> **Quick run** (`--quick`): smoke sizes to check the benchmark works; not representative.\n",
            );
        }
        let _ = write!(s, "\n## Machine\n\n{}", machine());
        self.native_section(&mut s);
        self.transport_section(&mut s);
        self.instantiate_section(&mut s);
        self.e2e_section(&mut s);
        s.push_str(
            "\n## 5. Gateway latency (LiteLLM guardrail)\n\n\
             The time vigil adds to a gateway call: `POST /beta/litellm_basic_guardrail_api` on an in-process \
             `vigil serve` with the bundled detectors, driven by a native load generator (48 threads, keep-alive \
             HTTP on loopback) at a steady open-loop rate. Latency runs from each call's scheduled send time to \
             its answer (no coordinated omission). Three servers side by side, the load rotating between them: \
             the default micro-batcher (a batch takes every call queued while the previous batch was scored), \
             the same with a 1 ms window for stragglers (opened only while calls arrive closer than 1 ms), and \
             no micro-batching (one call per plugin call). Mean batch = calls / plugin calls.\n",
        );
        match &self.gateway {
            Some(t) => s.push_str(t),
            None => s.push_str(NOT_RUN),
        }
        s.push_str(CLUSTER);
        match &self.cluster {
            Some(t) => s.push_str(t),
            None => s.push_str(NOT_RUN),
        }
        self.languages_section(&mut s);
        s.push_str(PROFILING);
        s
    }

    fn native_section(&self, s: &mut String) {
        s.push_str(
            "\n## 1. Native vs plugin, per bundled detector\n\n\
             The same detector crate (`plugins/NAME`) scored natively and as the bundled wasm plugin, on the same \
             batches, each side with its own fresh host state namespace (`vigil_runtime::state::Namespace`, the same \
             implementation). Every bundled plugin targets `vigil:detector@0.2.0`. **Plugin**: the batch through \
             the plugin's worker: the columns the manifest grants built from the host's parsed records, lowering, \
             the SDK refilling its requests from them, the guest, lifting, validation, and the hand-off to the \
             worker thread. **Native**: building the same requests as `vigil_sdk::Request`s with a copy of the \
             batch's text features (the native equivalent of lowering) and `Detector::score` with a native `Host` \
             over the host's state. The prompts' word features are computed once per batch before timing, for both \
             sides: the host shares them across plugins (section 4 states what computing them costs). \
             Ratio is native time / plugin time on the same batch (target >= 0.8). Mismatches count signals \
             whose score, labels or reason differ between the two; the first batches are scored by both but not \
             timed.\n\n",
        );
        let Some(tables) = &self.native else {
            s.push_str(NOT_RUN);
            return;
        };
        for t in tables {
            let _ = write!(s, "### {}\n\n", t.name);
            if let Some(r) = t.rows.first() {
                let _ = writeln!(s, "{}; {} timed batches of {} records.\n", t.about, r.batches, r.batch_size);
            }
            native_table(s, &t.rows);
        }
    }

    fn transport_section(&self, s: &mut String) {
        s.push_str(
            "\n## 2. Typed WIT batch vs JSON bytes\n\n\
             A bench-only guest (`bench/guests/transport`, world `bench/wit/transport.wit`) does the same trivial \
             work per record (sum of prompt lengths, xor of account handles) on a batch received as a typed \
             `list<request>` (contract 0.1's record, every field filled), as contract 0.2's columns (every column \
             granted, the prompts' text features included) or as `list<u8>` holding the batch as JSON. Typed: \
             building the requests from the host's records, lowering, lifting in the guest. Columns: the host's \
             own `granted_batch`, lowering, lifting (the features themselves are computed once per batch for \
             every plugin, not timed here). JSON: serializing the same requests with serde_json on the host, \
             copying the bytes in, parsing them with serde_json in the guest. The three take turns going \
             first.\n\n",
        );
        let Some(t) = &self.transport else {
            s.push_str(NOT_RUN);
            return;
        };
        let _ = writeln!(
            s,
            "{} rounds of {} records; JSON is {} bytes per record.\n",
            t.rounds,
            t.batch_size,
            thousands(t.json_bytes_per_record)
        );
        s.push_str("| transport | ns/record | vs typed |\n|---|---:|---:|\n");
        let _ = writeln!(s, "| typed `list<request>` (0.1) | {} | 1.00 |", f1(t.typed_ns));
        let _ = writeln!(
            s,
            "| columns with text features (0.2) | {} | {} |",
            f1(t.columns_ns),
            f2(t.columns_ns / t.typed_ns)
        );
        let _ = writeln!(s, "| JSON `list<u8>` (serde_json both sides) | {} | {} |", f1(t.json_ns), f2(t.ratio));
    }

    fn instantiate_section(&self, s: &mut String) {
        s.push_str("\n## 3. Instantiation\n\n");
        let Some(m) = &self.instantiate else {
            s.push_str(NOT_RUN);
            return;
        };
        let _ = writeln!(
            s,
            "`{}` (the largest bundled plugin, {} KiB of wasm), through the host's own code: (a) and (b) are \
             `PluginVersion::load` (what `vigil score`, `serve` and reloads do) without and with the \
             compiled-plugin disk cache (`vigil::compile_cache`, in a temp dir, warmed first); (c) and (d) are \
             `PluginVersion::fresh_instance` from the already linked component (`InstancePre`), what a worker does \
             after a trap, with the pooling allocator (copy-on-write memory images) and with on-demand allocation. \
             (a)/(b) and (c)/(d) alternate.\n",
            m.plugin,
            m.wasm_bytes / 1024
        );
        s.push_str("| path | iterations | median | drop (median) |\n|---|---:|---:|---:|\n");
        for r in &m.rows {
            let drop = if r.drop_us.is_finite() { format!("{} us", f1(r.drop_us)) } else { "-".into() };
            let _ = writeln!(s, "| {} | {} | {} | {drop} |", r.what, r.iterations, duration(r.median_us));
        }
        if let [a, b, c, d] = &m.rows[..] {
            let _ = writeln!(
                s,
                "\nThe cache is {:.0}x faster than compiling; pooling is {:.1}x faster than on-demand allocation.",
                a.median_us / b.median_us,
                d.median_us / c.median_us
            );
        }
    }

    fn e2e_section(&self, s: &mut String) {
        s.push_str(
            "\n## 4. End to end: `vigil score`\n\n\
             The release binary as a subprocess, file to file, the whole bundled set in enforce mode (the \
             default), the compiled-plugin cache warm (`VIGIL_CACHE_DIR`, one run first). Wall time includes \
             process start, loading the plugins, parsing and writing; \"vigil's own\" is the rate `vigil score` \
             reports, which excludes start-up.\n\n",
        );
        let Some(h) = &self.headline else {
            s.push_str(NOT_RUN);
            return;
        };
        s.push_str("| requests | runs | wall time (median) | requests/s | vigil's own requests/s | target |\n|---:|---:|---:|---:|---:|---:|\n");
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} s | {} | {} | 100,000 |",
            thousands(h.records as f64),
            h.runs,
            h.wall_s,
            thousands(h.rps),
            h.reported_rps.map_or("-".into(), thousands)
        );
        let _ = writeln!(
            s,
            "\n**The host's floor**: the same pipeline with no plugin at all (read, parse, admission, handles, \
             combine, the campaign stage, verdict JSON, write; in process, no start-up), on the same input: \
             **{} requests/s** (median of {} runs interleaved with the above). The text features the plugins \
             share (the prompts' word hashes and fingerprints, computed once per batch) cost the host another \
             **{:.0} ns per record** on one thread, which the floor run does not pay (no plugin asks for them). \
             The bundled set runs at {:.0}% of the floor.\n",
            thousands(h.floor_rps),
            h.runs,
            h.features_ns,
            100.0 * h.reported_rps.unwrap_or(h.rps) / h.floor_rps
        );
        if let Some((path, wall, rps, own)) = &h.baseline {
            let _ = writeln!(
                s,
                "| baseline `{path}` | {} | {wall:.2} s | {} | {} | |\n\nThis build / baseline, requests/s \
                 (wall): **{:.3}**, runs interleaved with the first side alternating.",
                h.runs,
                thousands(*rps),
                own.map_or("-".into(), thousands),
                h.rps / rps
            );
        }
        if let Some(rows) = &self.sweep {
            s.push_str(
                "\n### Batch size\n\n\
                 Throughput: `vigil score --batch-size N` (fewer records for the small sizes), median of rounds \
                 with the sizes interleaved. Latency: the time to score one batch through every bundled plugin and \
                 combine (`pipeline::Scorer::score`, in process, one batch at a time), p50 and p99.\n\n\
                 | batch size | records | requests/s (wall) | vigil's own requests/s | batches timed | batch latency p50 | p99 |\n\
                 |---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for r in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    r.batch_size,
                    thousands(r.records as f64),
                    thousands(r.wall_rps),
                    r.reported_rps.map_or("-".into(), thousands),
                    r.batches,
                    duration(r.p50_us),
                    duration(r.p99_us)
                );
            }
        }
        match &self.scaling {
            Some(Ok(c)) => {
                let _ = writeln!(
                    s,
                    "\n### Cores\n\nThe headline run under `taskset`, alternating, {}.\n\n\
                     | cores | wall time (median) | requests/s |\n|---|---:|---:|\n\
                     | 1 (`taskset -c 0`) | {:.2} s | {} |\n| 2 (`taskset -c 0,1`) | {:.2} s | {} |\n\n\
                     Two cores are {:.2}x one.",
                    plural(c.rounds, "round"),
                    c.one_core_s,
                    thousands(c.records as f64 / c.one_core_s),
                    c.two_cores_s,
                    thousands(c.records as f64 / c.two_cores_s),
                    c.one_core_s / c.two_cores_s
                );
            }
            Some(Err(why)) => {
                let _ = writeln!(s, "\n### Cores\n\n{why}");
            }
            None => {}
        }
    }
}

impl Report {
    fn languages_section(&self, s: &mut String) {
        s.push_str(
            "\n## 7. One detector in Rust, Python and JavaScript\n\n\
             `velocity` as the bundled Rust plugin, as its Python port (`examples/python-detector`, built with \
             componentize-py) and as its JavaScript port (`examples/js-detector`, built with componentize-js), \
             scored on the same batches through the same host path as section 1's plugin side (a worker each, \
             lowering, the guest, lifting, validation), each with its own fresh state namespace; which goes first \
             rotates per batch. The ports are built from the repository's sources during the run. Mismatches count \
             signals whose f32 score bits, labels or reason differ from the Rust plugin's. Build time is the \
             build command's wall time (the Rust plugin is built by the host's `build.rs` with the rest and not \
             timed here); first compile is `PluginVersion::load` (Cranelift compile, link, instantiate, init) \
             without the compiled-plugin cache, once; from cache is the same with the cache warm. docs/languages.md \
             reads these numbers.\n\n",
        );
        let Some(m) = &self.languages else {
            s.push_str(NOT_RUN);
            return;
        };
        s.push_str(
            "| language | plugin | built with | build time | component size | first compile | from cache |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        for b in &m.builds {
            match &b.result {
                Ok(x) => {
                    let build = if x.build_s.is_finite() { format!("{:.1} s", x.build_s) } else { "-".into() };
                    let _ = writeln!(
                        s,
                        "| {} | `{}` | {} | {build} | {} KiB | {} | {} |",
                        b.lang,
                        b.name,
                        b.tool,
                        thousands((x.wasm.len() / 1024) as f64),
                        duration(x.cold_ms * 1e3),
                        duration(x.cached_ms * 1e3)
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        s,
                        "| {} | `{}` | {} | left out: {} | | | |",
                        b.lang,
                        b.name,
                        b.tool,
                        e.replace('|', "/")
                    );
                }
            }
        }
        for t in &m.tables {
            let _ = write!(
                s,
                "\n### {}\n\nSection 1's workload; {} timed batches of {} records.\n\n\
                 | language | ns/record | ms per batch | time / Rust's | signals with score > 0 | mismatches with Rust |\n\
                 |---|---:|---:|---:|---:|---:|\n",
                t.name, t.batches, t.batch_size
            );
            for r in &t.rows {
                let mism = if r.errors > 0 {
                    format!("{} ({} failed batches)", r.mismatches, r.errors)
                } else {
                    r.mismatches.to_string()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} / {} | {} |",
                    r.lang,
                    thousands(r.ns_per_record),
                    f2(r.ms_per_batch),
                    f1(r.vs_rust),
                    thousands(r.flagged as f64),
                    thousands(r.signals as f64),
                    mism
                );
            }
        }
    }
}

fn native_table(s: &mut String, rows: &[native::Row]) {
    s.push_str(
        "| detector | native ns/record | plugin ns/record | native / plugin | signals with score > 0 | mismatches | max score difference |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let mism = if r.plugin_errors > 0 {
            format!("{} ({} plugin errors)", r.mismatches, r.plugin_errors)
        } else if r.mismatches != r.score_mismatches {
            format!("{} ({} in score)", r.mismatches, r.score_mismatches)
        } else {
            r.mismatches.to_string()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} | {} | {} |",
            r.name,
            f1(r.native_ns),
            f1(r.plugin_ns),
            f2(r.ratio),
            thousands(r.flagged as f64),
            thousands(r.signals as f64),
            mism,
            if r.max_diff == 0.0 { "0".into() } else { format!("{:.2e}", r.max_diff) },
        );
    }
    let (n, p) = rows.iter().fold((0.0, 0.0), |a, r| (a.0 + r.native_ns, a.1 + r.plugin_ns));
    let _ = writeln!(s, "| **all {}, summed** | {} | {} | {} | | | |\n", rows.len(), f1(n), f1(p), f2(n / p));
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// Microseconds, shown in the unit that reads best.
fn duration(us: f64) -> String {
    if !us.is_finite() {
        "-".into()
    } else if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} us")
    }
}

const PROFILING: &str = "
## Profiling

- `VIGIL_PERFMAP=true perf record -g target/release/vigil score --input log.ndjson --output /dev/null`, then
  `perf report`: with `VIGIL_PERFMAP=true` the engine writes `/tmp/perf-PID.map`, so JIT-compiled plugin frames
  are named instead of showing as bare addresses.
- Those names come from the wasm name section, which the bundled plugins do not have: `plugins/bundle/guest_build.rs`
  builds them stripped. For symbol names build the plugin yourself, unstripped:
  `CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --target wasm32-wasip2 -p NAME`, put
  `target/wasm32-wasip2/release/NAME.wasm` next to its manifest (`vigil bundled --out DIR` writes them all)
  and score with `--plugins DIR`.
- Both sides of section 1 in one profile: `perf record -g target/release/vigil-bench --quick --sections 1`.
";

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_durations() {
        assert_eq!(super::duration(12.34), "12.3 us");
        assert_eq!(super::duration(1234.0), "1.23 ms");
        assert_eq!(super::duration(2.5e6), "2.50 s");
        let d = super::today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
