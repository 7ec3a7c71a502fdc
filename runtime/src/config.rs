//! `--config FILE`: one typed configuration for every command. Every field
//! has a default, so the file is optional; unknown keys are errors, so a
//! typo is caught instead of silently ignored.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The configuration of every command: one field per `[table]` of the file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[scoring]`: batching and the decision thresholds.
    pub scoring: Scoring,
    /// `[input]`: bounds on request records and their admission.
    pub input: Input,
    /// `[limits]`: the limits a plugin gets unless its manifest sets its own.
    pub limits: Limits,
    /// `[state]`: bounds on host state, and when it is saved and dropped.
    pub state: StateBounds,
    /// `[server]`: `vigil serve`.
    pub server: Server,
    /// `[trust]`: trusted plugin signers and where signatures are required.
    pub trust: Trust,
    /// `[handles]`: the identity-handle key.
    pub handles: Handles,
    /// `[engine]`: how plugins are compiled and instantiated.
    pub engine: EngineConfig,
    /// `[guardrail]`: the LiteLLM guardrail endpoint.
    pub guardrail: Guardrail,
    /// `[ceilings]`: limits no plugin may exceed.
    pub ceilings: Ceilings,
    /// `[plugin_files]`: how plugin files are read.
    pub plugin_files: PluginFiles,
    /// `[campaigns]`: campaign verdicts from accounts linked by shared evidence.
    pub campaigns: Campaigns,
    /// `[cluster]`: `vigil serve --source nats://...`, one node of several.
    pub cluster: Cluster,
}

/// `[cluster]`: how a node shares partitions and state with the others
/// (docs/cluster.md).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// This node's name (default: host name and process id). Names must
    /// be unique among live nodes.
    pub node_id: Option<String>,
    /// A node that has not renewed its partition leases for this long is
    /// taken as dead: its partitions move.
    pub lease_ms: u64,
    /// How often a partition's state is snapshotted (and its records acked
    /// up to the snapshot). What a crash loses is re-scored from here.
    pub snapshot_interval_ms: u64,
    /// A partition runs at most this far ahead, in event time, of the
    /// slowest partition, so what it reads of the shared cross-account
    /// state is within this of what one process would read.
    pub align_slack_ms: u64,
    /// A partition's batch spans at most this much event time. On a busy
    /// log batches fill by size long before; on a sparse one this bounds
    /// how late a partition's additions reach the others. Ten minutes is
    /// about what one process's batch of 1,024 spans on the simulator's
    /// default log, so a cluster reads as fresh a state as one process.
    pub batch_span_ms: u64,
    /// How long `POST /v1/score` on a node waits for the owners' verdicts
    /// (the guardrail waits `guardrail.deadline_ms`). A record not
    /// answered in time is reported, and still scored.
    pub call_timeout_ms: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            node_id: None,
            lease_ms: 3_000,
            snapshot_interval_ms: 2_000,
            align_slack_ms: 600_000,
            batch_span_ms: 600_000,
            call_timeout_ms: 10_000,
        }
    }
}

/// `[campaigns]`: accounts linked by the labels detectors give (see
/// `score::campaigns`), and when a cluster of them is raised.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Campaigns {
    /// Off: no links kept, no campaign signal.
    pub enabled: bool,
    /// The campaign signal is reported but not counted, like a plugin in
    /// monitor mode.
    pub monitor: bool,
    /// Its weight in the combined score.
    pub weight: f64,
    /// Label kinds (`kind:id`) that link accounts (at most 8). The bundled
    /// detectors give these for what accounts share on purpose: a fan-out
    /// group, a script, a proxy pool, a card; not for what many innocent
    /// accounts share too (a `prefix:` crowd, a young fleet's `template:`),
    /// which is evidence for a verdict but would link bystanders.
    pub kinds: Vec<String>,
    /// A signal's labels link only from this score: a plugin gives a weak
    /// score to a link that is evidence but not a verdict.
    pub link_min: f64,
    /// Links older than this are forgotten.
    pub window_hours: u64,
    /// A label carried by more accounts than this is a crowd (a carrier's
    /// NAT, a viral prompt) and links nobody.
    pub crowd: usize,
    /// A cluster is raised with at least this many accounts and two
    /// pieces of evidence: kinds of link that tie enough of it (see
    /// `min_kind_accounts`), and enough accounts flagged on their own.
    pub min_accounts: usize,
    /// A kind of link is evidence when it ties at least this many of the
    /// cluster's accounts (and `min_kind_share` of them), through
    /// `min_kind_labels` labels or one label of `one_label_accounts`.
    pub min_kind_accounts: usize,
    /// The share of a cluster's accounts a kind of link must tie to be
    /// evidence.
    pub min_kind_share: f64,
    /// The labels a kind of link must tie them through to be evidence (one
    /// card, one prompt or one prefix is one shared thing)...
    pub min_kind_labels: usize,
    /// ...unless one label ties at least this many accounts.
    pub one_label_accounts: usize,
    /// At least this many accounts flagged on their own are one more piece
    /// of evidence.
    pub min_flagged: usize,
    /// Accounts held at most (about 120 bytes each).
    pub max_accounts: usize,
    /// Labels held at most (about 100 bytes each, plus 12 per member).
    pub max_labels: usize,
    /// How often (in event time) old links are dropped and clusters rebuilt.
    pub rebuild_minutes: u64,
}

impl Default for Campaigns {
    fn default() -> Self {
        Self {
            enabled: true,
            monitor: false,
            weight: 1.0,
            kinds: ["fanout", "script", "pool", "card"].map(String::from).to_vec(),
            link_min: 0.05,
            window_hours: 7 * 24,
            crowd: 300,
            min_accounts: 5,
            min_kind_accounts: 3,
            min_kind_share: 0.1,
            min_kind_labels: 2,
            one_label_accounts: 10,
            min_flagged: 5,
            max_accounts: 200_000,
            max_labels: 200_000,
            rebuild_minutes: 60,
        }
    }
}

/// Upper bounds the operator sets: a manifest chooses its limits within
/// them, signed or not, and a manifest asking for more is refused.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Ceilings {
    /// Highest `time_per_batch_ms` allowed, in ms.
    pub time_per_batch_ms: u64,
    /// Highest `memory_mb` allowed, in MiB.
    pub memory_mb: u64,
    /// Highest `log_lines_per_batch` allowed.
    pub log_lines_per_batch: u32,
    /// Highest `log_bytes_per_batch` allowed, in bytes.
    pub log_bytes_per_batch: u32,
    /// Highest `max_labels` allowed.
    pub max_labels: u32,
    /// Highest `max_label_bytes` allowed, in bytes.
    pub max_label_bytes: u32,
    /// Highest `max_reason_bytes` allowed, in bytes.
    pub max_reason_bytes: u32,
    /// Host state entries one plugin may ask for.
    pub state_entries: usize,
    /// Host state bytes one plugin may ask for.
    pub state_bytes: usize,
}

impl Default for Ceilings {
    fn default() -> Self {
        Self {
            time_per_batch_ms: 10_000,
            memory_mb: 512,
            log_lines_per_batch: 1_000,
            log_bytes_per_batch: 1 << 20,
            max_labels: 64,
            max_label_bytes: 512,
            max_reason_bytes: 8 << 10,
            state_entries: 4_000_000,
            state_bytes: 1 << 30,
        }
    }
}

/// How plugin files are read from a plugin directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginFiles {
    /// Largest accepted `NAME.wasm` (a Python component is about 20 MB).
    pub max_wasm_bytes: u64,
    /// Largest accepted `NAME.toml` and `NAME.sig`.
    pub max_manifest_bytes: u64,
    /// Symbolic links that resolve inside the plugin directory are followed
    /// (a Kubernetes ConfigMap mount is made of them); links that lead out
    /// of it are refused unless this is set.
    pub follow_links_outside: bool,
}

impl Default for PluginFiles {
    fn default() -> Self {
        Self { max_wasm_bytes: 64 << 20, max_manifest_bytes: 256 << 10, follow_links_outside: false }
    }
}

/// `POST /beta/litellm_basic_guardrail_api`: inline decisions for a LiteLLM
/// proxy (docs/litellm.md).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrail {
    /// A batch takes every call queued while the previous one was scored;
    /// with a window it then waits up to this long for more, but only while
    /// calls arrive closer together than that. 0 (default): never waits.
    /// Measured (BENCHMARKS.md): a 1 ms window always raised p50 by about
    /// a millisecond and did not improve p99 reliably.
    pub batch_wait_us: u64,
    /// Most calls in one batch (1: no micro-batching).
    pub max_batch: usize,
    /// Calls waiting beyond this are refused at once: overload.
    pub queue_limit: usize,
    /// An answer is due within this; past it, the failure policy answers.
    pub deadline_ms: u64,
    /// On overload, deadline or a failed enforcing plugin: `open` lets the
    /// call through, `closed` blocks it. The answer says which happened.
    pub on_failure: FailMode,
    /// Required in `x-api-key` (LiteLLM's `api_key`) if set;
    /// `VIGIL_GUARDRAIL_KEY` sets it too.
    pub api_key: Option<String>,
    /// Which LiteLLM identity is the record's `account`: the first present of
    /// `end_user_id`, `user_id`, `key_hash`, `team_id`, `org_id`.
    pub account_from: Vec<String>,
    /// Completed exchanges (request record + completion tokens) are
    /// appended here as request records (NDJSON); empty: `<state_dir>/exchanges.ndjson`.
    pub exchange_log: PathBuf,
    /// Requests remembered for joining their response side.
    pub max_pending: usize,
}

/// The guardrail's answer when vigil cannot decide.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Let the call through.
    Open,
    /// Block the call.
    Closed,
}

impl Default for Guardrail {
    fn default() -> Self {
        Self {
            batch_wait_us: 0,
            max_batch: 256,
            queue_limit: 4_096,
            deadline_ms: 250,
            on_failure: FailMode::Open,
            api_key: None,
            account_from: vec!["end_user_id".into(), "user_id".into(), "key_hash".into()],
            exchange_log: PathBuf::new(),
            max_pending: 100_000,
        }
    }
}

pub(crate) const ACCOUNT_SOURCES: &[&str] = &["end_user_id", "user_id", "key_hash", "team_id", "org_id"];

/// How plugins are compiled and instantiated.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Instances from a pre-reserved pool with copy-on-write memory images:
    /// replacing a trapped or reloaded instance costs microseconds.
    pub pooling: bool,
    /// Plugin instances alive at once (all plugins, including reload
    /// candidates), when pooling.
    pub max_instances: u32,
    /// Keep compiled plugins on disk so a restart skips compilation.
    pub cache: bool,
    /// Where. Empty: the `vigil` command picks `$VIGIL_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/vigil`, else `~/.cache/vigil`; a program embedding
    /// the runtime with it empty caches nothing.
    pub cache_dir: PathBuf,
    /// Name JIT-compiled plugin functions for `perf` (writes
    /// /tmp/perf-PID.map; see BENCHMARKS.md). `VIGIL_PERFMAP=true` sets it.
    pub perfmap: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { pooling: true, max_instances: 256, cache: true, cache_dir: PathBuf::new(), perfmap: false }
    }
}

impl EngineConfig {
    /// The cache directory to use, if caching is on and one is set.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        (self.cache && !self.cache_dir.as_os_str().is_empty()).then(|| self.cache_dir.clone())
    }
}

/// `[scoring]`: how records are batched and verdicts decided.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    /// Records per batch (1 to 65,536).
    pub batch_size: usize,
    /// A verdict is `flag` from this score.
    pub flag_threshold: f64,
    /// A verdict is `block` from this score.
    pub block_threshold: f64,
    /// `vigil score`: what a bad input line does (`--on-bad-input` overrides it).
    pub on_bad_input: BadInputPolicy,
    /// `vigil score`: batches being scored at once. More than one keeps
    /// every core busy while the slowest plugin finishes a batch; each
    /// plugin still sees batches in input order.
    pub in_flight: usize,
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            flag_threshold: 0.5,
            block_threshold: 0.9,
            on_bad_input: BadInputPolicy::Skip,
            in_flight: 4,
        }
    }
}

/// What a bad request record does to the rest of the input.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BadInputPolicy {
    /// Report each bad line on stderr and score the rest.
    Skip,
    /// Stop at the first bad line with a non-zero exit status.
    Fail,
}

impl std::str::FromStr for BadInputPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(Self::Skip),
            "fail" => Ok(Self::Fail),
            _ => Err(format!("{s:?}: expected skip or fail")),
        }
    }
}

/// `[input]`: bounds on request records, and what admits one to scoring.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Input {
    /// Longest accepted input line, in bytes.
    pub max_line_bytes: usize,
    /// Longest accepted prompt or system prompt, in bytes.
    pub max_prompt_bytes: usize,
    /// Longest accepted identity or other short string field, in bytes.
    pub max_field_bytes: usize,
    /// A record more than this far ahead of the wall clock is bad input
    /// (a timestamp in microseconds, or garbage): it would drag every
    /// window it touches into the future.
    pub max_future_ms: u64,
    /// A record more than this far behind the latest event time accepted
    /// so far (the stream's watermark) is bad input. 0: no limit.
    pub max_lateness_ms: u64,
    /// Request ids remembered to catch duplicates across batches (about
    /// 48 bytes each). 0: duplicates are only caught within a batch.
    pub recent_ids: usize,
}

impl Default for Input {
    fn default() -> Self {
        Self {
            max_line_bytes: 1 << 20,
            max_prompt_bytes: 256 << 10,
            max_field_bytes: 1024,
            max_future_ms: 86_400_000,
            max_lateness_ms: 7 * 86_400_000,
            recent_ids: 500_000,
        }
    }
}

/// Host-wide defaults for each plugin; a manifest's `[limits]` overrides them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Time a plugin may take on one batch, in ms.
    pub time_per_batch_ms: u64,
    /// A plugin instance's memory limit, in MiB.
    pub memory_mb: u64,
    /// Lines a plugin may log per batch (host `log`, stdout and stderr);
    /// the rest are dropped.
    pub log_lines_per_batch: u32,
    /// Bytes a plugin may log per batch.
    pub log_bytes_per_batch: u32,
    /// Most labels on one signal; more is invalid output.
    pub max_labels: u32,
    /// Longest label, in bytes.
    pub max_label_bytes: u32,
    /// Longest reason, in bytes.
    pub max_reason_bytes: u32,
    /// Wasm tables per plugin store.
    pub max_tables: u32,
    /// Elements in one wasm table.
    pub max_table_elements: u32,
    /// Wasm instances per plugin store.
    pub max_instances: u32,
    /// Consecutive failed batches before a plugin is quarantined.
    pub quarantine_after: u32,
    /// First quarantine; doubles on each failed retry, up to the maximum.
    pub quarantine_backoff_ms: u64,
    /// Longest quarantine, in ms.
    pub quarantine_max_backoff_ms: u64,
}

impl Limits {
    /// The first limit over its ceiling, said as an error.
    pub fn over_ceilings(&self, c: &Ceilings) -> Option<String> {
        let checks: [(&str, u64, u64); 7] = [
            ("time_per_batch_ms", self.time_per_batch_ms, c.time_per_batch_ms),
            ("memory_mb", self.memory_mb, c.memory_mb),
            ("log_lines_per_batch", self.log_lines_per_batch.into(), c.log_lines_per_batch.into()),
            ("log_bytes_per_batch", self.log_bytes_per_batch.into(), c.log_bytes_per_batch.into()),
            ("max_labels", self.max_labels.into(), c.max_labels.into()),
            ("max_label_bytes", self.max_label_bytes.into(), c.max_label_bytes.into()),
            ("max_reason_bytes", self.max_reason_bytes.into(), c.max_reason_bytes.into()),
        ];
        checks
            .iter()
            .find(|(_, v, max)| v > max)
            .map(|(k, v, max)| format!("{k} = {v} is over the operator's ceiling of {max} (config [ceilings])"))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time_per_batch_ms: 2_000,
            memory_mb: 128,
            log_lines_per_batch: 100,
            log_bytes_per_batch: 64 << 10,
            max_labels: 16,
            max_label_bytes: 128,
            max_reason_bytes: 1024,
            max_tables: 32,
            max_table_elements: 100_000,
            max_instances: 64,
            quarantine_after: 3,
            quarantine_backoff_ms: 1_000,
            quarantine_max_backoff_ms: 60_000,
        }
    }
}

/// Bounds on each plugin's host state namespace.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateBounds {
    /// Entries a plugin's namespace may hold unless its manifest sets
    /// `state_entries`; the least recently used are evicted first.
    pub max_entries_per_plugin: usize,
    /// Bytes a plugin's namespace may hold (values plus a fixed overhead per
    /// entry) unless its manifest sets `state_bytes`.
    pub max_bytes_per_plugin: usize,
    /// Largest value a plugin may store, in bytes; a larger one is refused.
    pub max_value_bytes: usize,
    /// `vigil serve` snapshots host state this often (and on SIGTERM).
    pub snapshot_interval_s: u64,
    /// The state of a plugin whose files left the directory is kept this
    /// long (in case it comes back), then dropped.
    pub removed_plugin_grace_s: u64,
}

impl Default for StateBounds {
    fn default() -> Self {
        Self {
            max_entries_per_plugin: 1_000_000,
            max_bytes_per_plugin: 256 << 20,
            max_value_bytes: 64 << 10,
            snapshot_interval_s: 60,
            removed_plugin_grace_s: 3_600,
        }
    }
}

/// `[server]`: the HTTP service, `vigil serve`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on (`HOST:PORT`).
    pub listen: String,
    /// Bearer token for the admin endpoints (audit name "config");
    /// `VIGIL_ADMIN_TOKEN` adds one named "env".
    pub admin_token: Option<String>,
    /// More admin tokens by name, for the audit log: `oncall = "..."`.
    pub admin_tokens: std::collections::BTreeMap<String, String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// `POST /v1/score`: reject a body with a bad record (400), or skip the
    /// bad records and report them in `errors`.
    pub on_bad_input: BadInputPolicy,
    /// Host state snapshots and the audit log live here.
    pub state_dir: PathBuf,
    /// Plugin file events are gathered until quiet for this long.
    pub reload_debounce_ms: u64,
    /// A full rescan of the plugin directory this often, in case an event
    /// was missed (0: never).
    pub rescan_interval_s: u64,
    /// Flagged accounts kept for cases (`--cases`, `GET /v1/cases`).
    pub max_cases: usize,
    /// Open connections; more are closed at once (and counted).
    pub max_connections: usize,
    /// A connection must send a request's headers within this (also the
    /// idle timeout between requests on a kept-alive connection).
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this.
    pub body_timeout_ms: u64,
    /// Requests parsed and scored at once; others wait (their bodies are
    /// not read meanwhile, so memory stays bounded).
    pub max_concurrent_requests: usize,
    /// Records in one `POST /v1/score` body.
    pub max_records_per_request: usize,
    /// Bad records reported for one body under `skip`; past this the
    /// whole body is refused.
    pub max_errors_per_request: usize,
    /// On SIGTERM, in-flight requests get this long to finish; then the
    /// server stops waiting, saves host state and exits.
    pub shutdown_grace_ms: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8787".into(),
            admin_token: None,
            admin_tokens: Default::default(),
            max_body_bytes: 16 << 20,
            on_bad_input: BadInputPolicy::Fail,
            state_dir: PathBuf::from("vigil-state"),
            reload_debounce_ms: 150,
            rescan_interval_s: 30,
            max_cases: 200_000,
            max_connections: 1_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_concurrent_requests: 8,
            max_records_per_request: 100_000,
            max_errors_per_request: 1_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[trust]`: which plugin signers are trusted, and where a signature is required.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Trust {
    /// Public key files (`vigil keygen`) of trusted plugin signers.
    pub keys: Vec<PathBuf>,
    /// Every plugin must carry a valid signature by a trusted key.
    pub require_signatures: bool,
    /// Only plugins in these directories must (a vendor drop-box, say).
    pub require_signatures_in: Vec<PathBuf>,
}

/// `[handles]`: the key of the identity-handle hash.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Handles {
    /// 32 hex digits keying the identity-handle hash. Set one per deployment
    /// and keep it: state keyed by handles is only meaningful under one key.
    pub key: String,
}

impl Default for Handles {
    fn default() -> Self {
        Self { key: "7669676c2d68616e646c652d6b657930".into() }
    }
}

impl Config {
    /// Reads and validates a config file.
    /// Relative paths in it are taken from the file's own directory, so a
    /// config means the same thing whatever the working directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut c = Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        c.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok(c)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.trust.keys.iter_mut().for_each(fix);
        self.trust.require_signatures_in.iter_mut().for_each(fix);
        fix(&mut self.server.state_dir);
        fix(&mut self.engine.cache_dir);
        fix(&mut self.guardrail.exchange_log);
    }

    /// Parses and validates a config file's text; unlike `load`, leaves
    /// relative paths as they are.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let c: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks values against their allowed ranges, and the limits against
    /// the ceilings.
    pub fn validate(&self) -> Result<(), Error> {
        let s = &self.scoring;
        let bad = |m: String| Err(Error::Config(m));
        if s.batch_size == 0 || s.batch_size > 65_536 {
            return bad(format!("scoring.batch_size must be 1..=65536, got {}", s.batch_size));
        }
        if self.engine.pooling && !(8..=10_000).contains(&self.engine.max_instances) {
            return bad(format!("engine.max_instances must be 8..=10000, got {}", self.engine.max_instances));
        }
        let g = &self.guardrail;
        if g.max_batch == 0 || g.max_batch > 65_536 || g.queue_limit == 0 || g.deadline_ms == 0 {
            return bad("guardrail.max_batch (1..=65536), queue_limit and deadline_ms must be positive".into());
        }
        if let Some(a) = g.account_from.iter().find(|a| !ACCOUNT_SOURCES.contains(&a.as_str())) {
            return bad(format!("guardrail.account_from: unknown source {a:?}; use {ACCOUNT_SOURCES:?}"));
        }
        if g.account_from.is_empty() {
            return bad("guardrail.account_from must name at least one source".into());
        }
        let c = &self.cluster;
        if c.lease_ms < 500 || c.snapshot_interval_ms == 0 || c.batch_span_ms == 0 || c.call_timeout_ms == 0 {
            return bad(
                "cluster.lease_ms must be at least 500, snapshot_interval_ms, batch_span_ms and call_timeout_ms positive"
                    .into(),
            );
        }
        if s.in_flight == 0 || s.in_flight > 64 {
            return bad(format!("scoring.in_flight must be 1..=64, got {}", s.in_flight));
        }
        if !(0.0..=1.0).contains(&s.flag_threshold) || !(0.0..=1.0).contains(&s.block_threshold) {
            return bad("scoring thresholds must be in [0, 1]".into());
        }
        if s.flag_threshold > s.block_threshold {
            return bad(format!(
                "scoring.flag_threshold ({}) is above block_threshold ({})",
                s.flag_threshold, s.block_threshold
            ));
        }
        if self.handle_key().is_none() {
            return bad("handles.key must be 32 hex digits".into());
        }
        if self.limits.time_per_batch_ms == 0 || self.limits.memory_mb == 0 {
            return bad("limits.time_per_batch_ms and limits.memory_mb must be positive".into());
        }
        if let Some(m) = self.limits.over_ceilings(&self.ceilings) {
            return bad(format!("limits: {m}"));
        }
        let st = &self.state;
        for (name, v, max) in [
            ("state.max_entries_per_plugin", st.max_entries_per_plugin, self.ceilings.state_entries),
            ("state.max_bytes_per_plugin", st.max_bytes_per_plugin, self.ceilings.state_bytes),
        ] {
            if v > max {
                return bad(format!("{name} = {v} is over its ceiling of {max}"));
            }
        }
        let sv = &self.server;
        if sv.max_connections == 0 || sv.max_concurrent_requests == 0 || sv.max_records_per_request == 0 {
            return bad(
                "server.max_connections, max_concurrent_requests and max_records_per_request must be positive".into()
            );
        }
        if sv.header_timeout_ms == 0 || sv.body_timeout_ms == 0 {
            return bad("server.header_timeout_ms and body_timeout_ms must be positive".into());
        }
        if self.input.max_future_ms == 0 {
            return bad("input.max_future_ms must be positive".into());
        }
        let c = &self.campaigns;
        if c.kinds.len() > 8 || c.kinds.iter().any(|k| k.is_empty() || k.contains(':')) {
            return bad("campaigns.kinds: at most 8 label kinds, each a non-empty word without ':'".into());
        }
        if !(0.0..=1.0).contains(&c.weight)
            || !(0.0..=1.0).contains(&c.link_min)
            || !(0.0..=1.0).contains(&c.min_kind_share)
        {
            return bad("campaigns.weight, link_min and min_kind_share must be in [0, 1]".into());
        }
        if c.window_hours == 0 || c.rebuild_minutes == 0 || c.crowd < 2 || c.min_accounts < 2 {
            return bad(
                "campaigns.window_hours and rebuild_minutes must be positive, crowd and min_accounts at least 2".into(),
            );
        }
        Ok(())
    }

    /// The 128-bit handle key.
    pub fn handle_key(&self) -> Option<[u8; 16]> {
        let v = hex::decode(self.handles.key.trim()).ok()?;
        v.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.scoring.batch_size, 1024);
        assert_eq!(c.scoring.flag_threshold, 0.5);
        assert_eq!(c.scoring.block_threshold, 0.9);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let e = Config::parse("[scoring]\nbatch_sise = 5\n").unwrap_err().to_string();
        assert!(e.contains("batch_sise"), "{e}");
        let e = Config::parse("[scoring]\nflag_threshold = 0.95\n").unwrap_err().to_string();
        assert!(e.contains("flag_threshold"), "{e}");
        let e = Config::parse("[handles]\nkey = \"abc\"\n").unwrap_err().to_string();
        assert!(e.contains("handles.key"), "{e}");
    }
}
