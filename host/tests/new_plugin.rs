//! `vigil new` as a vendor meets it: from an empty directory outside this
//! repository, the project's native tests pass, it builds to a component,
//! `vigil check` accepts it, and `vigil score` runs it and it fires.

use std::path::Path;
use std::process::Command;

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

    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(target.join("wasm32-wasip2/release/burst.wasm"), plugins.join("burst.wasm")).unwrap();
    let manifest = std::fs::read_to_string(project.join("burst.toml")).unwrap();
    std::fs::write(plugins.join("burst.toml"), manifest.replace("max_requests = 100", "max_requests = 3")).unwrap();
    let check = run(Command::new(VIGIL).arg("check").arg(plugins.join("burst.wasm")));
    assert!(check.contains("is a valid vigil plugin"), "{check}");

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
    assert_eq!(fired, ["b3", "b4"], "{verdicts}");
}
