// Shared by the build scripts of `host` (bundled plugins) and `tests` (test
// plugins): compiles guest crates of this workspace for wasm32-wasip2 with a
// nested cargo, as wasmtime's test-programs do, so `cargo build` and `cargo
// test` need no manual step.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `packages` (workspace package names) in release mode for
/// wasm32-wasip2 and returns the path of each `.wasm`, in order.
pub fn build_guests(workspace: &Path, packages: &[&str]) -> Vec<PathBuf> {
    let target_dir = workspace.join("target").join("guest");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // Small components compile faster in the host: no debug info, stripped.
    // One codegen unit and LTO: the guest's hot loops inline across the SDK.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    // The outer build's flags are for the host target, not for wasm.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("failed to run cargo for the wasm guests");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\nhint: run `rustup target add wasm32-wasip2`"
        } else {
            ""
        };
        panic!("building wasm guests {packages:?} failed:\n{stderr}{hint}");
    }
    for dir in ["wit", "guest-sdk"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    packages
        .iter()
        .map(|p| {
            let file = format!("{}.wasm", p.replace('-', "_"));
            let path = target_dir.join("wasm32-wasip2").join("release").join(file);
            assert!(path.exists(), "{} was not built", path.display());
            path
        })
        .collect()
}
