//! Compiles the bundled detectors (plugins/NAME) to components and embeds
//! them, so `vigil demo` and `vigil score` without `--plugins` work from one
//! binary. The list of bundled plugins lives here and nowhere else.

#[path = "guest_build.rs"]
mod guest_build;

use std::path::Path;

const BUNDLED: &[&str] =
    &["velocity", "reasoning-elicitation", "output-harvest", "lockstep", "shared-infra", "template-fleet", "fanout"];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let workspace = Path::new(&manifest_dir).parent().and_then(Path::parent).unwrap();
    let wasm = guest_build::build_guests(workspace, BUNDLED);
    let mut src = String::from(
        "/// (name, component bytes, manifest text) of each bundled plugin.\npub const BUNDLED: &[(&str, &[u8], &str)] = &[\n",
    );
    for (name, path) in BUNDLED.iter().zip(&wasm) {
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
