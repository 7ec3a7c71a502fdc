//! Compiles the bundled detectors (plugins/*) to components and embeds them,
//! so `vigil demo` and `vigil score` without `--plugins` work from one binary.

#[path = "guest_build.rs"]
mod guest_build;

use std::path::Path;

const BUNDLED: &[&str] =
    &["velocity", "reasoning-elicitation", "output-harvest", "lockstep", "shared-infra", "template-fleet"];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let workspace = Path::new(&manifest_dir).parent().unwrap();
    println!("cargo:rerun-if-env-changed=VIGIL_NO_BUNDLED");
    // The fuzz build (nightly, sanitizer flags) needs no plugins.
    let bundled: &[&str] = if std::env::var_os("VIGIL_NO_BUNDLED").is_some() { &[] } else { BUNDLED };
    let wasm = if bundled.is_empty() { Vec::new() } else { guest_build::build_guests(workspace, bundled) };
    let mut src = String::from(
        "/// (name, component bytes, manifest text) of each bundled plugin.\npub const BUNDLED: &[(&str, &[u8], &str)] = &[\n",
    );
    for (name, path) in bundled.iter().zip(&wasm) {
        let manifest = workspace.join("plugins").join(name).join(format!("{name}.toml"));
        src.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}), include_str!({:?})),\n",
            path.display().to_string(),
            manifest.display().to_string()
        ));
        println!("cargo:rerun-if-changed={}", workspace.join("plugins").join(name).display());
    }
    src.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, src).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=guest_build.rs");
}
