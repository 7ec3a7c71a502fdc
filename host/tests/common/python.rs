//! componentize-py for what builds Python plugins (the tests, and the
//! languages benchmark, which includes this file with `#[path]`): the one
//! on PATH, else one pip installs into `site` (`--target` leaves the
//! system's Python alone, which a distribution may forbid pip to change).

use std::path::Path;
use std::process::Command;

/// The version built with when none is on PATH.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.*";

pub fn componentize_py(site: &Path) -> Result<Command, String> {
    if Command::new("componentize-py").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(Command::new("componentize-py"));
    }
    let cmd = || {
        let mut c = Command::new("python3");
        c.env("PYTHONPATH", site).args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ]);
        c
    };
    if !cmd().arg("--version").output().is_ok_and(|o| o.status.success()) {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--upgrade", "--target"])
            .arg(site)
            .arg(COMPONENTIZE_PY)
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install {COMPONENTIZE_PY} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(cmd())
}
