//! `vigil keygen` and `vigil sign`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use vigil_runtime::plugin::trust;

pub fn keygen(name: &Path) -> anyhow::Result<ExitCode> {
    let (secret, public) = trust::keygen(name).map_err(|e| anyhow::anyhow!(e))?;
    writeln!(std::io::stdout(), "wrote {} (keep it secret) and {}", secret.display(), public.display())?;
    Ok(ExitCode::SUCCESS)
}

pub fn sign(key: &Path, plugin: &Path) -> anyhow::Result<ExitCode> {
    let sig = trust::sign(key, plugin).map_err(|e| anyhow::anyhow!(e))?;
    writeln!(std::io::stdout(), "wrote {}", sig.display())?;
    Ok(ExitCode::SUCCESS)
}
