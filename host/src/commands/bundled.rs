//! `vigil bundled`: write the bundled plugins into a directory, signed if
//! a key is given.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use vigil_runtime::plugin::trust;

pub fn write(out: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out)?;
    let mut stdout = std::io::stdout();
    for f in vigil_bundle::files() {
        let wasm = out.join(format!("{}.wasm", f.name));
        std::fs::write(&wasm, &f.wasm)?;
        std::fs::write(out.join(format!("{}.toml", f.name)), &f.manifest)?;
        match key {
            Some(k) => {
                let sig = trust::sign(k, &wasm).map_err(|e| anyhow::anyhow!(e))?;
                writeln!(stdout, "{} (signed: {})", wasm.display(), sig.display())?;
            }
            None => writeln!(stdout, "{}", wasm.display())?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
