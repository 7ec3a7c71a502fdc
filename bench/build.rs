//! Builds the transport benchmark's guest (guests/transport) for
//! wasm32-wasip2 the way the host builds its bundled plugins, and records
//! the compiler and wasmtime versions for the report.

#[path = "../plugins/bundle/guest_build.rs"]
mod guest_build;

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let workspace = Path::new(&manifest_dir).parent().unwrap();
    let wasm = guest_build::build_guests(workspace, &["bench-transport"]);
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("transport_guest.rs");
    let src = format!("pub const TRANSPORT_GUEST: &[u8] = include_bytes!({:?});\n", wasm[0].display().to_string());
    std::fs::write(out, src).unwrap();

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BENCH_RUSTC_VERSION={version}");
    // The wasmtime actually locked, not what a manifest asks for.
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_string)))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BENCH_WASMTIME_VERSION={wasmtime}");

    println!("cargo:rerun-if-changed={}", workspace.join("bench/guests/transport").display());
    println!("cargo:rerun-if-changed={}", workspace.join("bench/wit").display());
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../plugins/bundle/guest_build.rs");
}
