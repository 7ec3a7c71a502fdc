//! Helpers for the cross-boundary tests: the test plugins' bytes, plugin
//! directories in temp dirs, and records.

use std::path::Path;

use vigil_runtime::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::input::record::Record;
use vigil_runtime::plugin::files::PluginFiles;
use vigil_runtime::registry::load::{self, PluginSet};
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;

/// Test plugin components, built from tests/plugins by build.rs.
pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));

    /// A bundled plugin's component.
    pub fn bundled(name: &str) -> &'static [u8] {
        vigil_bundle::BUNDLED.iter().find(|b| b.0 == name).expect("bundled plugin").1
    }

    /// A bundled plugin's manifest.
    pub fn bundled_manifest(name: &str) -> &'static str {
        vigil_bundle::BUNDLED.iter().find(|b| b.0 == name).expect("bundled plugin").2
    }
}

pub fn files(name: &str, wasm: &[u8], manifest: &str) -> PluginFiles {
    PluginFiles { name: name.into(), wasm: wasm.to_vec(), manifest: manifest.into(), sig: None }
}

/// Writes NAME.wasm + NAME.toml into `dir`.
pub fn write_plugin(dir: &Path, name: &str, wasm: &[u8], manifest: &str) {
    std::fs::write(dir.join(format!("{name}.wasm")), wasm).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
}

/// A scorer over `files`, sharing `state` (pass the same store to model a
/// new version of the same plugins).
pub fn scorer(files: Vec<PluginFiles>, state: &StateStore) -> Scorer {
    scorer_with(files, state, Config::default())
}

pub fn scorer_with(files: Vec<PluginFiles>, state: &StateStore, config: Config) -> Scorer {
    let runtime = Runtime::new().unwrap();
    let trust = vigil_runtime::plugin::trust::Trust::default();
    let set: PluginSet = load::load(&runtime, &config, state, files, &trust, None);
    assert!(set.failures.is_empty(), "{:?}", set.failures);
    Scorer::new(set, &config)
}

/// A record line with the given fields merged over a minimal record.
pub fn line(id: usize, ts_ms: i64, account: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"id":"r-{id}","ts_ms":{ts_ms},"account":"{account}"{sep}{extra}}}"#)
}

pub fn record(id: usize, ts_ms: i64, account: &str, extra: &str) -> Record {
    Record::parse(line(id, ts_ms, account, extra).as_bytes(), id as u64 + 1, &Default::default()).unwrap()
}

pub const T0: i64 = 1_760_000_000_000;

/// A small log of a vigil-sim preset: two days, `benign` benign accounts,
/// and every campaign cut to `per_campaign` accounts running throughout.
pub fn sim_log(preset: &str, seed: u64, benign: usize, per_campaign: usize) -> Vec<Record> {
    let mut s = vigil_sim::Scenario::preset(preset, seed).expect("preset");
    s.days = 2.0;
    s.benign.accounts = benign;
    for c in &mut s.campaigns {
        c.accounts = per_campaign;
        c.start_day = 0.0;
        c.end_day = 2.0;
    }
    let pop = vigil_sim::population(&s);
    let limits = Config::default().input;
    vigil_sim::Simulator::new(&s, &pop)
        .enumerate()
        .map(|(i, r)| Record::parse(&serde_json::to_vec(&r).unwrap(), i as u64 + 1, &limits).unwrap())
        .collect()
}

/// A `vigil serve` config for tests: state in `state_dir`, reloads 30 ms
/// after a change and only on change (no rescans), admin token `t0ken`.
pub fn serve_config(state_dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.state_dir = state_dir.to_path_buf();
    c.server.reload_debounce_ms = 30;
    c.server.rescan_interval_s = 0;
    c.server.admin_token = Some("t0ken".into());
    c
}

/// Log output captured in memory (install it with a tracing subscriber's
/// `with_writer`), to check what plugins managed to log.
#[derive(Clone, Default)]
pub struct LogCapture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
