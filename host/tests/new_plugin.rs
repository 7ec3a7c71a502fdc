//! `vigil new` as a vendor meets it: from an empty directory outside this
//! repository, the project's native tests pass, it builds to a component,
//! `vigil test` fails on a wrong fixture with a diff and passes on the
//! project's own, the plugin is signed, `vigil check` accepts it, and a
//! running `vigil serve` that requires signatures hot-loads it and it fires.
//! In Rust, and in Python through componentize-py (installed with pip where
//! it is missing).

#[path = "common/python.rs"]
mod python;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use python::componentize_py;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn a_new_project_builds_alone_tests_signs_and_goes_live() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(Command::new(VIGIL).args(["new", "burst", "--dir"]).arg(dir));
    let project = dir.join("burst");
    // Nothing outside the project: the SDK and its WIT were copied in.
    for f in [
        "Cargo.toml",
        "burst.toml",
        "src/lib.rs",
        "tests/fixtures.toml",
        "vigil-sdk/Cargo.toml",
        "vigil-sdk/wit/detector.wit",
    ] {
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
    let wasm = target.join("wasm32-wasip2/release/burst.wasm");
    vigil_test(&project, &[wasm.to_str().unwrap(), "--manifest", "burst.toml"]);
    ship(dir, "burst", &wasm, &project.join("burst.toml"));
}

#[test]
fn a_new_python_project_builds_tests_signs_and_goes_live() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(Command::new(VIGIL).args(["new", "pyburst", "--lang", "python", "--dir"]).arg(dir));
    let project = dir.join("pyburst");
    let tests = run(Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(&project));
    let passed = |name: &str| tests.lines().any(|l| l.starts_with(name) && l.ends_with("... ok"));
    assert!(passed("test_flags_an_account_past_its_budget_and_not_another"), "{tests}");
    run(componentize_py(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("componentize-py"))
        .unwrap()
        .args(["-d", "wit", "-w", "detector", "componentize", "app", "-o", "pyburst.wasm"])
        .current_dir(&project));
    vigil_test(&project, &["pyburst.wasm"]);
    ship(dir, "pyburst", &project.join("pyburst.wasm"), &project.join("pyburst.toml"));
}

/// `vigil test` in the project: a fixture expecting the wrong thing fails
/// with a diff and exit 1; the project's own passes.
fn vigil_test(project: &Path, plugin: &[&str]) {
    let fixtures = std::fs::read_to_string(project.join("tests/fixtures.toml")).unwrap();
    // The third request is within the budget: expecting a score is wrong.
    let wrong = fixtures.replacen("score = 0\n", "score = [0.1, 1]\n", 1);
    assert_ne!(wrong, fixtures);
    std::fs::write(project.join("tests/wrong.toml"), wrong).unwrap();
    let out = Command::new(VIGIL)
        .arg("test")
        .args(plugin)
        .args(["--fixtures", "tests/wrong.toml"])
        .current_dir(project)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("FAIL  an account past its budget"), "{text}");
    assert!(text.contains("expect #1 (record b2, plugin"), "{text}");
    assert!(text.contains("- score in [0.1, 1]") && text.contains("+ score 0,"), "{text}");
    let text = run(Command::new(VIGIL).arg("test").args(plugin).current_dir(project));
    assert!(text.contains("1 tests: 1 passed, 0 failed"), "{text}");
}

/// Signs the plugin (with a budget of 3 requests a minute) under a new
/// key, and drops it into a running `vigil serve` that requires
/// signatures by that key: it goes live and fires on exactly the requests
/// over its budget.
fn ship(dir: &Path, name: &str, wasm: &Path, manifest: &Path) {
    let staged = dir.join("staged");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::copy(wasm, staged.join(format!("{name}.wasm"))).unwrap();
    let manifest = std::fs::read_to_string(manifest).unwrap();
    assert!(manifest.contains("max_requests = 100"), "{manifest}");
    std::fs::write(staged.join(format!("{name}.toml")), manifest.replace("max_requests = 100", "max_requests = 3"))
        .unwrap();
    let key = dir.join("vendor");
    run(Command::new(VIGIL).arg("keygen").arg(&key));
    run(Command::new(VIGIL)
        .arg("sign")
        .arg("--key")
        .arg(key.with_extension("key"))
        .arg(staged.join(format!("{name}.wasm"))));
    let config = dir.join("vigil.toml");
    std::fs::write(&config, format!("[trust]\nrequire_signatures = true\nkeys = [{:?}]\n", key.with_extension("pub")))
        .unwrap();
    let check =
        run(Command::new(VIGIL).arg("--config").arg(&config).arg("check").arg(staged.join(format!("{name}.wasm"))));
    assert!(check.contains("ok    signed by trusted key") && check.contains("is a valid vigil plugin"), "{check}");

    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut serve = Command::new(VIGIL)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(&plugins)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("VIGIL_ADMIN_TOKEN", "s3cret")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(serve.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).expect(&line).to_string();
    // Keep reading the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});

    // The signature first, so the pair never lands unsigned.
    for ext in ["sig", "toml", "wasm"] {
        std::fs::copy(staged.join(format!("{name}.{ext}")), plugins.join(format!("{name}.{ext}"))).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let resp =
            ureq::get(&format!("http://{addr}/v1/plugins")).set("Authorization", "Bearer s3cret").call().unwrap();
        let v: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
        let me = v["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
        if me.as_ref().is_some_and(|p| p["state"] == "active") {
            break;
        }
        assert!(me.as_ref().is_none_or(|p| p["last_error"].is_null()), "{v}");
        assert!(Instant::now() < deadline, "{name} never went live: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Five requests from one account within a minute, two from another:
    // the fourth and fifth of the first are over the budget of 3.
    let mut log = String::new();
    for i in 0..5 {
        log += &format!("{{\"id\":\"b{i}\",\"ts_ms\":{},\"account\":\"busy\"}}\n", 1_767_225_600_000i64 + i * 1000);
    }
    for i in 0..2 {
        log += &format!("{{\"id\":\"q{i}\",\"ts_ms\":{},\"account\":\"quiet\"}}\n", 1_767_225_600_000i64 + i * 1000);
    }
    let resp = ureq::post(&format!("http://{addr}/v1/score")).send_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    let fired: Vec<&str> = v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["signals"][0]["score"].as_f64().unwrap() > 0.0)
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(fired, ["b3", "b4"], "{name}: {v}");
    serve.kill().unwrap();
    serve.wait().unwrap();
}

/// The SDK is a crate a vendor can take from a registry: `cargo package`
/// builds it from the packaged files alone (its WIT included).
#[test]
fn the_sdk_packages_and_builds_from_its_package_alone() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-package");
    let text = run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["package", "-p", "vigil-sdk", "--allow-dirty"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("CARGO_TARGET_DIR", &target));
    assert!(text.contains("Verifying vigil-sdk"), "{text}");
    let list = run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["package", "-p", "vigil-sdk", "--allow-dirty", "--list"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")));
    assert!(list.lines().any(|l| l == "wit/detector.wit"), "{list}");
}
