//! Prometheus metrics (text format), all prefixed `vigil_`. Updated per
//! batch and per reload, never per request, so a mutex is cheap enough.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::util::lock;

type Labels = Vec<(&'static str, String)>;

const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Hist {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    /// Counters and gauges.
    counters: BTreeMap<(&'static str, Labels), f64>,
    hists: BTreeMap<(&'static str, Labels), Hist>,
}

/// What the gauges say about one live plugin.
pub struct PluginGauge {
    /// The plugin's name.
    pub plugin: String,
    /// Its manifest version.
    pub version: String,
    /// sha256 of its `.wasm`.
    pub sha256: String,
    /// sha256 of its manifest.
    pub manifest_sha256: String,
    /// The build digest its signals carry.
    pub digest: String,
    /// `enforce` or `monitor`.
    pub mode: &'static str,
    /// Sitting out after repeated failures.
    pub quarantined: bool,
}

/// The process's counters, gauges and histograms, by name and labels. `render`
/// shows only the names it has help text for (`HELP`).
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

const HELP: &[(&str, &str, &str)] = &[
    ("vigil_requests_scored_total", "counter", "Requests scored, by plugin and version."),
    ("vigil_batches_scored_total", "counter", "Batches scored, by plugin and version."),
    ("vigil_plugin_errors_total", "counter", "Plugin failures on a batch, by plugin and kind."),
    ("vigil_plugin_batch_seconds", "histogram", "Time a plugin took on a batch."),
    ("vigil_decisions_total", "counter", "Verdicts by decision."),
    (
        "vigil_campaign_links_dropped_total",
        "counter",
        "Links the campaign stage could not keep (campaigns.max_accounts or max_labels reached).",
    ),
    ("vigil_reloads_total", "counter", "Plugin reload attempts by outcome."),
    ("vigil_shadow_reloads_total", "counter", "Reload attempts of candidates in shadow (shadow/), by outcome."),
    ("vigil_bad_input_total", "counter", "Request records refused as bad input."),
    ("vigil_guardrail_calls_total", "counter", "LiteLLM guardrail calls by input type and answer."),
    ("vigil_guardrail_failures_total", "counter", "Guardrail calls answered by the failure policy, by cause."),
    ("vigil_guardrail_batches_total", "counter", "Micro-batches scored for guardrail calls."),
    (
        "vigil_guardrail_batched_calls_total",
        "counter",
        "Guardrail calls scored in micro-batches (over batches: mean size).",
    ),
    ("vigil_guardrail_seconds", "histogram", "Time from a guardrail call's arrival to its answer."),
    ("vigil_admin_actions_total", "counter", "Admin API actions by action."),
    ("vigil_http_connections_refused_total", "counter", "Connections closed at once: over server.max_connections."),
    ("vigil_cluster_records_scored_total", "counter", "Records this cluster node scored from its partitions."),
    ("vigil_cluster_batches_total", "counter", "Partition batches this cluster node scored."),
    ("vigil_cluster_partitions_taken_total", "counter", "Partition leases this cluster node took."),
    (
        "vigil_cluster_partitions_owned",
        "gauge",
        "Partitions this cluster node holds and keeps (not being handed back).",
    ),
    ("vigil_cluster_bad_records_total", "counter", "Records on the stream that were not valid records (skipped)."),
    ("vigil_cluster_shared_bytes_total", "counter", "Bytes of cross-account state this node published."),
    ("vigil_cluster_snapshot_bytes_total", "counter", "Bytes of partition snapshots this node wrote."),
    (
        "vigil_cluster_lead_seconds_total",
        "counter",
        "Event time each batch ran ahead of the slowest partition, summed (over batches: the mean staleness of \
         the cross-account state a batch reads).",
    ),
    ("vigil_cluster_shared_applied_total", "counter", "Other nodes' shared-state messages applied."),
    (
        "vigil_cluster_inline_total",
        "counter",
        "Records of inline calls sent to their partitions' owners, by answer (verdict, late, duplicate, failed).",
    ),
    (
        "vigil_cluster_unanswered_total",
        "counter",
        "Records of POST /v1/score on this node answered without a verdict (late, duplicate or not stored).",
    ),
    (
        "vigil_cluster_shared_lag_seconds_total",
        "counter",
        "Wall time from a shared-state message's publication to its application here, summed.",
    ),
];

impl Metrics {
    /// No metrics recorded yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Adds `v` to a counter.
    pub fn add(&self, name: &'static str, labels: Labels, v: f64) {
        *self.lock().counters.entry((name, labels)).or_default() += v;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: Labels, v: f64) {
        self.lock().counters.insert((name, labels), v);
    }

    /// Records a duration in a histogram (buckets from 0.5 ms to 5 s).
    pub fn observe(&self, name: &'static str, labels: Labels, d: Duration) {
        let secs = d.as_secs_f64();
        let mut inner = self.lock();
        let h = inner.hists.entry((name, labels)).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// A counter's or gauge's value (for tests and readiness checks).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.lock()
            .counters
            .iter()
            .filter(|((n, l), _)| *n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(_, v)| *v)
            .sum()
    }

    /// The text exposition, with an info metric for each live plugin.
    pub fn render(&self, live: &[PluginGauge]) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), v) in inner.counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {v}", fmt_labels(labels, None));
            }
            for ((n, labels), h) in inner.hists.iter().filter(|((n, _), _)| n == name) {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "{n}_bucket{} {}", fmt_labels(labels, Some(&b.to_string())), h.counts[i]);
                }
                let _ = writeln!(out, "{n}_bucket{} {}", fmt_labels(labels, Some("+Inf")), h.count);
                let _ = writeln!(out, "{n}_sum{} {}", fmt_labels(labels, None), h.sum);
                let _ = writeln!(out, "{n}_count{} {}", fmt_labels(labels, None), h.count);
            }
        }
        let _ = writeln!(
            out,
            "# HELP vigil_plugin_info The active version of each plugin.\n# TYPE vigil_plugin_info gauge"
        );
        for p in live {
            let labels = vec![
                ("plugin", p.plugin.clone()),
                ("version", p.version.clone()),
                ("sha256", p.sha256.clone()),
                ("manifest_sha256", p.manifest_sha256.clone()),
                ("digest", p.digest.clone()),
                ("mode", p.mode.to_string()),
            ];
            let _ = writeln!(out, "vigil_plugin_info{} 1", fmt_labels(&labels, None));
        }
        let _ = writeln!(
            out,
            "# HELP vigil_plugin_quarantined 1 while a plugin sits out after repeated failures.\n# TYPE vigil_plugin_quarantined gauge"
        );
        for p in live {
            let labels = vec![("plugin", p.plugin.clone())];
            let _ = writeln!(out, "vigil_plugin_quarantined{} {}", fmt_labels(&labels, None), u8::from(p.quarantined));
        }
        out
    }
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.add("vigil_decisions_total", vec![("decision", "flag".into())], 2.0);
        m.observe("vigil_plugin_batch_seconds", vec![("plugin", "p".into())], Duration::from_millis(3));
        let t = m.render(&[]);
        assert!(
            t.contains("# TYPE vigil_decisions_total counter\nvigil_decisions_total{decision=\"flag\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("vigil_plugin_batch_seconds_bucket{plugin=\"p\",le=\"0.005\"} 1"), "{t}");
        assert!(t.contains("vigil_plugin_batch_seconds_bucket{plugin=\"p\",le=\"0.001\"} 0"), "{t}");
        assert!(t.contains("vigil_plugin_batch_seconds_count{plugin=\"p\"} 1"), "{t}");
        assert_eq!(m.get("vigil_decisions_total", &[("decision", "flag")]), 2.0);
    }
}
