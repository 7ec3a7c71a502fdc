//! `vigil new NAME`: a plugin project that builds on its own, outside this
//! repository: a detector with native unit tests and its manifest. In
//! Rust, with the SDK (copied into the project from this binary unless
//! `--sdk` points to one), whose own copy of the WIT travels with it; in
//! Python, with the WIT for componentize-py.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use vigil_runtime::plugin::files::RESERVED_NAMES;

/// The project templates; `{{name}}`, `{{crate}}` and `{{sdk}}` are filled in.
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml.tmpl")),
    ("{{name}}.toml", include_str!("../../templates/rust/NAME.toml.tmpl")),
    ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs.tmpl")),
    ("README.md", include_str!("../../templates/rust/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/rust/gitignore.tmpl")),
    ("tests/fixtures.toml", include_str!("../../templates/common/fixtures.toml.tmpl")),
];

const PYTHON: &[(&str, &str)] = &[
    ("detector.py", include_str!("../../templates/python/detector.py.tmpl")),
    ("app.py", include_str!("../../templates/python/app.py.tmpl")),
    ("test_detector.py", include_str!("../../templates/python/test_detector.py.tmpl")),
    ("{{name}}.toml", include_str!("../../templates/python/NAME.toml.tmpl")),
    ("README.md", include_str!("../../templates/python/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/python/gitignore.tmpl")),
    ("tests/fixtures.toml", include_str!("../../templates/common/fixtures.toml.tmpl")),
    ("wit/detector.wit", include_str!("../../../wit/detector.wit")),
];

/// The SDK as this binary was built with it. A test checks that the list
/// holds every file of `guest-sdk/`.
const SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../guest-sdk/Cargo.toml")),
    ("README.md", include_str!("../../../guest-sdk/README.md")),
    ("wit/detector.wit", include_str!("../../../guest-sdk/wit/detector.wit")),
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("src/batch.rs", include_str!("../../../guest-sdk/src/batch.rs")),
    ("src/batch_state.rs", include_str!("../../../guest-sdk/src/batch_state.rs")),
    ("src/detector.rs", include_str!("../../../guest-sdk/src/detector.rs")),
    ("src/hash.rs", include_str!("../../../guest-sdk/src/hash.rs")),
    ("src/request.rs", include_str!("../../../guest-sdk/src/request.rs")),
    ("src/sets.rs", include_str!("../../../guest-sdk/src/sets.rs")),
    ("src/sketch.rs", include_str!("../../../guest-sdk/src/sketch.rs")),
    ("src/testing.rs", include_str!("../../../guest-sdk/src/testing.rs")),
    ("src/text.rs", include_str!("../../../guest-sdk/src/text.rs")),
    ("src/window.rs", include_str!("../../../guest-sdk/src/window.rs")),
];

#[derive(clap::Args)]
pub struct Args {
    /// The plugin's name: its file name, state namespace and crate name
    /// (lowercase letters, digits and '-').
    name: String,
    /// Where the project directory NAME is created.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The plugin's language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Rust: depend on the SDK at this path instead of a copy inside the
    /// project.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    /// Built with componentize-py.
    Python,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    check_name(&a.name)?;
    let root = a.dir.join(&a.name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    if a.lang == Lang::Python {
        if a.sdk.is_some() {
            bail!("--sdk is for Rust projects");
        }
        write_all(&root, PYTHON, &|s: &str| s.replace("{{name}}", &a.name))?;
        println!("created {}: a detector in detector.py, its manifest {}.toml", root.display(), a.name);
        println!("next: cd {} && python3 -m unittest, then README.md (build, vigil test, ship)", root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let sdk = match &a.sdk {
        Some(p) => {
            let p = std::path::absolute(p).with_context(|| format!("--sdk {}", p.display()))?;
            if !p.join("Cargo.toml").is_file() {
                bail!("--sdk {}: no Cargo.toml there", p.display());
            }
            let p = p.to_str().filter(|s| !s.contains(['\'', '\n'])).with_context(|| {
                format!("--sdk {}: a path with a quote, a newline or non-UTF-8 cannot go in Cargo.toml", p.display())
            })?;
            format!("path = '{p}'")
        }
        None => {
            write_all(&root.join("vigil-sdk"), SDK, &|s| s.to_string())?;
            "path = \"vigil-sdk\"".to_string()
        }
    };
    let krate = a.name.replace('-', "_");
    let fill = |s: &str| s.replace("{{name}}", &a.name).replace("{{crate}}", &krate).replace("{{sdk}}", &sdk);
    write_all(&root, RUST, &fill)?;
    println!("created {}: a detector in src/lib.rs, its manifest {}.toml", root.display(), a.name);
    println!("next: cd {} && cargo test, then README.md (build, vigil test, ship)", root.display());
    Ok(ExitCode::SUCCESS)
}

fn write_all(root: &Path, files: &[(&str, &str)], fill: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
    for (path, text) in files {
        let path = root.join(fill(path));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A name that is a file name, a state namespace and a crate name at once,
/// and not one of the host's own (which the host would refuse to load).
fn check_name(name: &str) -> anyhow::Result<()> {
    if RESERVED_NAMES.contains(&name) {
        bail!("plugin name {name:?} is the host's own stage's: choose another");
    }
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!("plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter (at most 64)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_copy_holds_every_file_of_the_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        let mut on_disk: Vec<String> = std::fs::read_dir(sdk.join("src"))
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.extend(["Cargo.toml", "README.md", "wit/detector.wit"].map(String::from));
        on_disk.sort();
        let mut listed: Vec<String> = SDK.iter().map(|(p, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "host/src/commands/new.rs SDK list");
    }

    #[test]
    fn the_sdk_carries_the_contract_unchanged() {
        assert!(
            include_str!("../../../wit/detector.wit") == include_str!("../../../guest-sdk/wit/detector.wit"),
            "guest-sdk/wit/detector.wit differs from wit/detector.wit: copy it over"
        );
    }

    #[test]
    fn names_are_checked() {
        for good in ["burst", "my-detector2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Burst", "2fast", "a_b", "a/b", "x-", "../x", "campaign"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
