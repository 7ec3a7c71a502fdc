//! `NAME.toml`: a plugin's version, mode, weight, grants, limits, failure
//! policy and its own configuration.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Ceilings, Limits};
use crate::error::{ErrorKind, PluginError};

/// `NAME.toml` as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's version; must not be empty.
    pub version: String,
    /// A line about the plugin, for people.
    #[serde(default)]
    pub description: String,
    /// Whether its score counts (default: enforce).
    #[serde(default)]
    pub mode: Mode,
    /// Its weight in the combined score, in [0, 1] (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// The request fields it may see (`GRANTABLE`, the grants table of
    /// docs/contract.md); the rest arrive empty.
    #[serde(default)]
    pub grants: Vec<String>,
    /// What a failed batch counts as.
    #[serde(default)]
    pub failure: Failure,
    /// Its own limits, in place of the host's defaults.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// The plugin's own settings: any TOML table, handed to its `init` as
    /// JSON.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: toml::Table,
}

fn one() -> f64 {
    1.0
}

/// Whether a plugin's signals count in the combined score.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Counts in the combined score.
    #[default]
    Enforce,
    /// Reported in `signals`, never counted: watch a detector before it counts.
    Monitor,
}

impl Mode {
    /// `enforce` or `monitor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

/// `[failure]`: what a plugin that failed on a batch counts as.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// `open` (the default) or `closed`.
    #[serde(default)]
    pub policy: FailurePolicy,
    /// The score a failed batch counts as under `policy = "closed"`.
    #[serde(default = "one")]
    pub score: f64,
}

impl Default for Failure {
    fn default() -> Self {
        Self { policy: FailurePolicy::Open, score: 1.0 }
    }
}

/// How a failed plugin counts in the combined score.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// A failed plugin counts as 0.
    #[default]
    Open,
    /// A failed plugin counts as `failure.score`.
    Closed,
}

/// `[limits]`: the host's defaults this plugin changes, within the
/// operator's ceilings (the fields mean what they do in `config::Limits`;
/// one not set is the config's `[limits]` value).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Time it may take on one batch, in ms.
    pub time_per_batch_ms: Option<u64>,
    /// Its memory limit, in MiB.
    pub memory_mb: Option<u64>,
    /// Lines it may log per batch.
    pub log_lines_per_batch: Option<u32>,
    /// Bytes it may log per batch.
    pub log_bytes_per_batch: Option<u32>,
    /// Most labels on one of its signals.
    pub max_labels: Option<u32>,
    /// Its longest label, in bytes.
    pub max_label_bytes: Option<u32>,
    /// Its longest reason, in bytes.
    pub max_reason_bytes: Option<u32>,
    /// Host state entries for this plugin (the config's
    /// `state.max_entries_per_plugin` otherwise).
    pub state_entries: Option<usize>,
    /// Host state bytes for this plugin (the config's
    /// `state.max_bytes_per_plugin` otherwise).
    pub state_bytes: Option<usize>,
}

/// The request fields a plugin may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// May see `account`.
    pub account: bool,
    /// May see `org`.
    pub org: bool,
    /// May see `api_key`.
    pub api_key: bool,
    /// May see `ip`, and so `ip_prefix`.
    pub ip: bool,
    /// May see `ip_prefix`.
    pub ip_prefix: bool,
    /// May see `asn`.
    pub asn: bool,
    /// May see `user_agent`.
    pub user_agent: bool,
    /// May see `model`.
    pub model: bool,
    /// May see `payment_fingerprint`.
    pub payment_fingerprint: bool,
    /// May see `conversation_id`.
    pub conversation_id: bool,
    /// May see `turn`.
    pub turn: bool,
    /// May see `prompt`.
    pub prompt: bool,
    /// May see `system_prompt`.
    pub system_prompt: bool,
    /// May see `prompt_tokens`.
    pub prompt_tokens: bool,
    /// May see `completion_tokens`.
    pub completion_tokens: bool,
    /// May see `max_tokens`.
    pub max_tokens: bool,
    /// May see `account_created_ms`.
    pub account_created_ms: bool,
    /// Every attribute.
    pub all_attrs: bool,
    /// Only these attribute keys (`attrs.KEY`).
    pub attrs: Vec<String>,
}

/// What `grants` may name, and what each lets a plugin see. Identity
/// fields arrive as handles (keyed hashes); `resolve` gives their text.
pub const GRANTABLE: &[(&str, &str)] = &[
    ("account", "the account, as a handle"),
    ("org", "the organisation, as a handle"),
    ("api_key", "the API key id, as a handle"),
    ("ip", "the client IP, as a handle; includes `ip_prefix`"),
    ("ip_prefix", "the IP's network (/24 for IPv4, /48 for IPv6), as a handle, without the IP"),
    ("asn", "the client's autonomous system number"),
    ("user_agent", "the user agent, as a handle"),
    ("model", "the model asked for, as a handle"),
    ("payment_fingerprint", "the payment instrument's hash, as a handle"),
    ("conversation_id", "the conversation, as a handle"),
    ("turn", "the turn number in the conversation"),
    ("prompt", "the prompt text"),
    ("system_prompt", "the system prompt text"),
    ("prompt_tokens", "input tokens"),
    ("completion_tokens", "output tokens"),
    ("max_tokens", "the max_tokens asked for"),
    ("account_created_ms", "the account's creation time"),
    ("attrs", "every attribute in `attrs`"),
    ("attrs.KEY", "the attribute KEY only"),
];

/// The names `grants` may use, for error messages.
pub fn grantable_names() -> String {
    GRANTABLE.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl Grants {
    /// The grants a manifest names; an unknown name is an error.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut g = Grants::default();
        for n in names {
            let flag = match n.as_str() {
                "account" => &mut g.account,
                "org" => &mut g.org,
                "api_key" => &mut g.api_key,
                "ip" => &mut g.ip,
                "ip_prefix" => &mut g.ip_prefix,
                "asn" => &mut g.asn,
                "user_agent" => &mut g.user_agent,
                "model" => &mut g.model,
                "payment_fingerprint" => &mut g.payment_fingerprint,
                "conversation_id" => &mut g.conversation_id,
                "turn" => &mut g.turn,
                "prompt" => &mut g.prompt,
                "system_prompt" => &mut g.system_prompt,
                "prompt_tokens" => &mut g.prompt_tokens,
                "completion_tokens" => &mut g.completion_tokens,
                "max_tokens" => &mut g.max_tokens,
                "account_created_ms" => &mut g.account_created_ms,
                "attrs" => &mut g.all_attrs,
                other => match other.strip_prefix("attrs.") {
                    Some(k) if !k.is_empty() => {
                        g.attrs.push(k.to_string());
                        continue;
                    }
                    _ => {
                        return Err(format!("unknown grant {other:?}; grantable fields: {}", grantable_names()));
                    }
                },
            };
            *flag = true;
        }
        Ok(g)
    }

    /// Whether identity field `f` is granted (an IP grant includes its prefix).
    pub fn id_field(&self, f: crate::batch::handles::IdField) -> bool {
        use crate::batch::handles::IdField;
        match f {
            IdField::Account => self.account,
            IdField::Org => self.org,
            IdField::ApiKey => self.api_key,
            IdField::Ip => self.ip,
            IdField::IpPrefix => self.ip_prefix || self.ip,
            IdField::UserAgent => self.user_agent,
            IdField::Model => self.model,
            IdField::PaymentFingerprint => self.payment_fingerprint,
            IdField::Conversation => self.conversation_id,
        }
    }

    /// Whether attribute `key` is granted.
    pub fn attr(&self, key: &str) -> bool {
        self.all_attrs || self.attrs.iter().any(|k| k == key)
    }
}

/// A manifest checked and resolved against the host's default limits and
/// the operator's ceilings.
#[derive(Debug, Clone)]
pub struct PluginManifest {
    /// The manifest as written.
    pub raw: Manifest,
    /// Its `grants`, parsed.
    pub grants: Grants,
    /// The limits in force: the host's defaults with the manifest's
    /// `[limits]` applied.
    pub limits: Limits,
    /// `[config]` as JSON for `init`.
    pub config_json: String,
}

impl PluginManifest {
    /// Parses and checks `plugin`'s manifest against the host's default limits
    /// and the operator's ceilings.
    pub fn parse(plugin: &str, text: &str, defaults: &Limits, ceilings: &Ceilings) -> Result<Self, PluginError> {
        let err = |m: String| PluginError::new(plugin, ErrorKind::Manifest, m);
        let raw: Manifest = toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        if raw.version.trim().is_empty() {
            return Err(err("`version` must not be empty".into()));
        }
        if !(0.0..=1.0).contains(&raw.weight) {
            return Err(err(format!("`weight` must be in [0, 1], got {}", raw.weight)));
        }
        if !(0.0..=1.0).contains(&raw.failure.score) {
            return Err(err(format!("`failure.score` must be in [0, 1], got {}", raw.failure.score)));
        }
        let grants = Grants::parse(&raw.grants).map_err(|m| err(format!("`grants`: {m}")))?;
        let mut limits = defaults.clone();
        let o = &raw.limits;
        if let Some(v) = o.time_per_batch_ms {
            limits.time_per_batch_ms = v;
        }
        if let Some(v) = o.memory_mb {
            limits.memory_mb = v;
        }
        if let Some(v) = o.log_lines_per_batch {
            limits.log_lines_per_batch = v;
        }
        if let Some(v) = o.log_bytes_per_batch {
            limits.log_bytes_per_batch = v;
        }
        if let Some(v) = o.max_labels {
            limits.max_labels = v;
        }
        if let Some(v) = o.max_label_bytes {
            limits.max_label_bytes = v;
        }
        if let Some(v) = o.max_reason_bytes {
            limits.max_reason_bytes = v;
        }
        if limits.time_per_batch_ms == 0 || limits.memory_mb == 0 {
            return Err(err("`limits.time_per_batch_ms` and `limits.memory_mb` must be positive".into()));
        }
        if let Some(m) = limits.over_ceilings(ceilings) {
            return Err(err(format!("limits.{m}")));
        }
        for (k, v, max) in [
            ("state_entries", o.state_entries, ceilings.state_entries),
            ("state_bytes", o.state_bytes, ceilings.state_bytes),
        ] {
            if let Some(v) = v.filter(|v| *v > max) {
                return Err(err(format!(
                    "`limits.{k} = {v}` is over the operator's ceiling of {max} (config [ceilings])"
                )));
            }
        }
        let config_json = serde_json::to_string(&raw.config).map_err(|e| err(format!("`config`: {e}")))?;
        Ok(Self { raw, grants, limits, config_json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<PluginManifest, PluginError> {
        PluginManifest::parse("p", t, &Limits::default(), &Ceilings::default())
    }

    #[test]
    fn minimal_manifest_takes_defaults() {
        let m = parse("version = \"1.0.0\"").unwrap();
        assert_eq!(m.raw.mode, Mode::Enforce);
        assert_eq!(m.raw.weight, 1.0);
        assert_eq!(m.raw.failure.policy, FailurePolicy::Open);
        assert_eq!(m.grants, Grants::default());
        assert_eq!(m.config_json, "{}");
        assert_eq!(m.limits.time_per_batch_ms, Limits::default().time_per_batch_ms);
    }

    #[test]
    fn full_manifest() {
        let m = parse(
            r#"version = "0.2.0"
               mode = "monitor"
               weight = 0.5
               grants = ["account", "prompt", "attrs.region"]
               [failure]
               policy = "closed"
               score = 0.7
               [limits]
               time_per_batch_ms = 50
               [config]
               threshold = 3
               names = ["a"]"#,
        )
        .unwrap();
        assert_eq!(m.raw.mode, Mode::Monitor);
        assert!(m.grants.account && m.grants.prompt && !m.grants.ip);
        assert!(m.grants.attr("region") && !m.grants.attr("other"));
        assert_eq!(m.limits.time_per_batch_ms, 50);
        assert_eq!(m.config_json, r#"{"names":["a"],"threshold":3}"#);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse("version = \"1\"\ngrants = [\"password\"]").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Manifest);
        assert!(e.message.contains("password") && e.message.contains("grantable"), "{e}");
        assert!(parse("version = \"1\"\nweight = 2.0").unwrap_err().message.contains("weight"));
        assert!(parse("version = \"1\"\nmode = \"loud\"").unwrap_err().message.contains("mode"));
        assert!(parse("grants = []").unwrap_err().message.contains("version"));
        assert!(parse("version = \"1\"\ntimeout = 5").unwrap_err().message.contains("timeout"));
    }

    #[test]
    fn a_manifest_cannot_exceed_the_operators_ceilings() {
        let e = parse("version = \"1\"\n[limits]\ntime_per_batch_ms = 3600000").unwrap_err();
        assert!(e.message.contains("time_per_batch_ms = 3600000") && e.message.contains("ceiling"), "{e}");
        let e = parse("version = \"1\"\n[limits]\nmemory_mb = 4096").unwrap_err();
        assert!(e.message.contains("memory_mb"), "{e}");
        let e = parse("version = \"1\"\n[limits]\nstate_bytes = 100000000000").unwrap_err();
        assert!(e.message.contains("state_bytes"), "{e}");
        // Within them, a manifest chooses.
        let m = parse("version = \"1\"\n[limits]\ntime_per_batch_ms = 9000\nmemory_mb = 256").unwrap();
        assert_eq!((m.limits.time_per_batch_ms, m.limits.memory_mb), (9000, 256));
    }
}
