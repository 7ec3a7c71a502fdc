//! Builds the test plugins (tests/plugins/*) for wasm32-wasip2.

#[path = "../plugins/bundle/guest_build.rs"]
mod guest_build;

use std::path::Path;

const TEST_PLUGINS: &[&str] = &["raw-canary", "behave", "hostile", "wrong-world"];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let workspace = Path::new(&manifest_dir).parent().unwrap();
    let wasm = guest_build::build_guests(workspace, TEST_PLUGINS);
    let mut src = String::new();
    for (name, path) in TEST_PLUGINS.iter().zip(&wasm) {
        let konst = name.to_uppercase().replace('-', "_");
        src.push_str(&format!("pub const {konst}: &[u8] = include_bytes!({:?});\n", path.display().to_string()));
        println!("cargo:rerun-if-changed={}", workspace.join("tests/plugins").join(name).display());
    }
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("test_plugins.rs"), src).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../plugins/bundle/guest_build.rs");
}
