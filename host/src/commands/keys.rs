//! `vigil keygen` and `vigil sign` (a plugin, or a plugin set).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use vigil_runtime::plugin::trust;

pub fn keygen(name: &Path) -> anyhow::Result<ExitCode> {
    let (secret, public) = trust::keygen(name).map_err(|e| anyhow::anyhow!(e))?;
    writeln!(std::io::stdout(), "wrote {} (keep it secret) and {}", secret.display(), public.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Signs one NAME.wasm, or every one in a directory (a plugin set).
pub fn sign(key: &Path, plugin: &Path) -> anyhow::Result<ExitCode> {
    let wasms: Vec<std::path::PathBuf> = if plugin.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(plugin)
            .map_err(|e| anyhow::anyhow!("{}: {e}", plugin.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        v.sort();
        anyhow::ensure!(!v.is_empty(), "{}: no NAME.wasm in it", plugin.display());
        v
    } else {
        vec![plugin.to_path_buf()]
    };
    for wasm in wasms {
        let sig = trust::sign(key, &wasm).map_err(|e| anyhow::anyhow!(e))?;
        writeln!(std::io::stdout(), "wrote {}", sig.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
