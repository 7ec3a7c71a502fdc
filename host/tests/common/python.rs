//! componentize-py for the tests that build Python plugins: the one on
//! PATH, else one pip installs into the target directory (`--target` leaves
//! the system's Python alone, which a distribution may forbid pip to
//! change). Included with `#[path]` by the tests that need it.

use std::path::Path;
use std::process::Command;

/// The version the tests build with when none is on PATH.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.*";

pub fn componentize_py() -> Command {
    if Command::new("componentize-py").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Command::new("componentize-py");
    }
    let site = Path::new(env!("CARGO_TARGET_TMPDIR")).join("componentize-py");
    let cmd = || {
        let mut c = Command::new("python3");
        c.env("PYTHONPATH", &site).args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ]);
        c
    };
    if !cmd().arg("--version").output().is_ok_and(|o| o.status.success()) {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--upgrade", "--target"])
            .arg(&site)
            .arg(COMPONENTIZE_PY)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "pip install {COMPONENTIZE_PY} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cmd()
}
