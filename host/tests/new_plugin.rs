//! `vigil new` as a vendor meets it: from an empty directory outside this
//! repository, the project's native tests pass, it builds to a component,
//! `vigil check` accepts it, and `vigil score` runs it and it fires. In
//! Rust, and in Python through componentize-py (installed with pip where
//! it is missing).

#[path = "common/python.rs"]
mod python;

use std::path::Path;
use std::process::Command;

use python::componentize_py;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn a_new_project_builds_alone_and_its_plugin_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(Command::new(VIGIL).args(["new", "burst", "--dir"]).arg(dir));
    let project = dir.join("burst");
    // Nothing outside the project: the SDK and its WIT were copied in.
    for f in ["Cargo.toml", "burst.toml", "src/lib.rs", "vigil-sdk/Cargo.toml", "vigil-sdk/wit/detector.wit"] {
        assert!(project.join(f).is_file(), "{f} missing");
    }
    let again = Command::new(VIGIL).args(["new", "burst", "--dir"]).arg(dir).output().unwrap();
    assert!(!again.status.success(), "a second `vigil new` over the project succeeded");

    // One target directory across runs keeps this test incremental; the
    // sources are the project's alone.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-plugin");
    let cargo = || {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(&project).env("CARGO_TARGET_DIR", &target);
        c
    };
    let tests = run(cargo().args(["test", "--release"]));
    assert!(tests.contains("flags_an_account_past_its_budget_and_not_another ... ok"), "{tests}");
    run(cargo().args(["build", "--release", "--target", "wasm32-wasip2"]));

    install(dir, "burst", &target.join("wasm32-wasip2/release/burst.wasm"), &project.join("burst.toml"));
    assert_fires(dir, "burst");
}

#[test]
fn a_new_python_project_builds_and_its_plugin_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(Command::new(VIGIL).args(["new", "pyburst", "--lang", "python", "--dir"]).arg(dir));
    let project = dir.join("pyburst");
    let tests = run(Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(&project));
    let passed = |name: &str| tests.lines().any(|l| l.starts_with(name) && l.ends_with("... ok"));
    assert!(passed("test_flags_an_account_past_its_budget_and_not_another"), "{tests}");
    run(componentize_py()
        .args(["-d", "wit", "-w", "detector", "componentize", "app", "-o", "pyburst.wasm"])
        .current_dir(&project));
    install(dir, "pyburst", &project.join("pyburst.wasm"), &project.join("pyburst.toml"));
    assert_fires(dir, "pyburst");
}

/// Puts the plugin in `dir/plugins` with a budget of 3 requests a minute,
/// and checks that `vigil check` accepts it.
fn install(dir: &Path, name: &str, wasm: &Path, manifest: &Path) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let installed = plugins.join(format!("{name}.wasm"));
    std::fs::copy(wasm, &installed).unwrap();
    let manifest = std::fs::read_to_string(manifest).unwrap();
    assert!(manifest.contains("max_requests = 100"), "{manifest}");
    std::fs::write(plugins.join(format!("{name}.toml")), manifest.replace("max_requests = 100", "max_requests = 3"))
        .unwrap();
    let check = run(Command::new(VIGIL).arg("check").arg(&installed));
    assert!(check.contains("is a valid vigil plugin"), "{check}");
}

/// `vigil score` with the plugin alone fires on exactly the requests over
/// its budget.
fn assert_fires(dir: &Path, name: &str) {
    let plugins = dir.join("plugins");
    // Five requests from one account within a minute, two from another:
    // the fourth and fifth of the first are over the budget of 3.
    let mut log = String::new();
    for i in 0..5 {
        log += &format!("{{\"id\":\"b{i}\",\"ts_ms\":{},\"account\":\"busy\"}}\n", 1_767_225_600_000i64 + i * 1000);
    }
    for i in 0..2 {
        log += &format!("{{\"id\":\"q{i}\",\"ts_ms\":{},\"account\":\"quiet\"}}\n", 1_767_225_600_000i64 + i * 1000);
    }
    std::fs::write(dir.join("log.ndjson"), log).unwrap();
    run(Command::new(VIGIL)
        .args(["score", "--plugins"])
        .arg(&plugins)
        .arg("--input")
        .arg(dir.join("log.ndjson"))
        .arg("--output")
        .arg(dir.join("verdicts.ndjson"))
        .arg("--state-dir")
        .arg(dir.join("state")));
    let verdicts = std::fs::read_to_string(dir.join("verdicts.ndjson")).unwrap();
    let fired: Vec<String> = verdicts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["signals"][0]["score"].as_f64().unwrap() > 0.0)
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fired, ["b3", "b4"], "{name}: {verdicts}");
}
