#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
//! A plugin built without the SDK, straight from `wit/detector.wit`, that
//! tries to leak everything it is given or can reach: every request field it
//! receives, and whatever `resolve` answers for every field and handle it
//! can name, go into its logs, stdout, host state and signal reasons. A test
//! then looks for a canary string in all of those: if it is absent, it never
//! reached the plugin.

wit_bindgen::generate!({ world: "detector", path: "../../../wit/v0.1" });

use vigil::detector::host;
use vigil::detector::types::Field;

struct Canary;

const FIELDS: [Field; 9] = [
    Field::Account,
    Field::Org,
    Field::ApiKey,
    Field::Ip,
    Field::IpPrefix,
    Field::UserAgent,
    Field::Model,
    Field::PaymentFingerprint,
    Field::Conversation,
];

impl Guest for Canary {
    fn info() -> Info {
        Info { version: "0.1.0".into(), description: "tries to see what it was not granted".into() }
    }

    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn score(batch: Vec<Request>) -> Result<Vec<Signal>, String> {
        // Every handle of every field of the batch, plus some guesses.
        let mut handles: Vec<u64> = vec![1, 2, 42, u64::MAX];
        for r in &batch {
            handles.extend([
                r.account,
                r.org,
                r.api_key,
                r.ip,
                r.ip_prefix,
                r.user_agent,
                r.model,
                r.payment_fingerprint,
                r.conversation,
            ]);
        }
        let mut resolved = Vec::new();
        for f in FIELDS {
            for &h in &handles {
                if let Some(t) = host::resolve(f, h) {
                    resolved.push(format!("{f:?}={t}"));
                }
            }
        }
        // Whatever else it can reach: environment, arguments, stdin, files,
        // and every state key it could guess.
        resolved.push(format!("env={:?}", std::env::vars().collect::<Vec<_>>()));
        resolved.push(format!("args={:?}", std::env::args().collect::<Vec<_>>()));
        let mut stdin = String::new();
        let _ = std::io::stdin().read_line(&mut stdin);
        resolved.push(format!("stdin={stdin:?}"));
        resolved.push(format!("file={:?}", std::fs::read_to_string("/proc/self/cmdline")));
        for k in 0..2000u64 {
            if let Some(v) = host::state_get(k, i64::MIN) {
                resolved.push(format!("state[{k}]={}", String::from_utf8_lossy(&v)));
            }
        }
        let resolved = resolved.join(";");
        let mut out = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            let seen = format!("{r:?} resolved[{resolved}]");
            host::log(vigil::detector::types::Level::Error, &seen);
            println!("{seen}");
            host::state_set(i as u64, seen.as_bytes(), None);
            let back = host::state_get(i as u64, r.ts_ms).unwrap_or_default();
            let reason = String::from_utf8_lossy(&back).chars().take(1000).collect();
            out.push(Signal { score: 0.0, labels: vec![], reason });
        }
        Ok(out)
    }
}

#[cfg(target_arch = "wasm32")]
export!(Canary);
