//! Signed plugins: ed25519 keys, signatures over both a plugin's `.wasm` and
//! its manifest (so grants and limits cannot be widened without the
//! vendor's key), and the trust policy of the config's `[trust]` table.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::config;
use crate::error::{Error, ErrorKind, PluginError};
use crate::worker::sha256_hex;

const SECRET_HEADER: &str = "vigil-ed25519-secret-key";
const PUBLIC_HEADER: &str = "vigil-ed25519-public-key";
const SIG_HEADER: &str = "vigil-ed25519-signature";

/// What is signed: both files' digests, under a domain-separation tag.
fn message(wasm: &[u8], manifest: &[u8]) -> Vec<u8> {
    format!("vigil plugin signature v1\nwasm sha256 {}\nmanifest sha256 {}\n", sha256_hex(wasm), sha256_hex(manifest))
        .into_bytes()
}

fn read_hex_file(path: &Path, header: &str, len: usize) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(format!("{}: not a {header} file", path.display()));
    }
    let bytes = hex::decode(lines.next().unwrap_or("").trim()).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != len {
        return Err(format!("{}: expected {len} bytes of key", path.display()));
    }
    Ok(bytes)
}

/// Writes `NAME.key` (secret, mode 0600) and `NAME.pub`.
pub fn keygen(name: &Path) -> Result<(PathBuf, PathBuf), String> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let secret = name.with_extension("key");
    let public = name.with_extension("pub");
    if secret.exists() {
        return Err(format!("{} exists: refusing to overwrite a key", secret.display()));
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .map_err(|e| format!("{}: {e}", secret.display()))?;
        writeln!(f, "{SECRET_HEADER}\n{}", hex::encode(key.to_bytes())).map_err(|e| e.to_string())?;
    }
    std::fs::write(&public, format!("{PUBLIC_HEADER}\n{}\n", hex::encode(key.verifying_key().to_bytes())))
        .map_err(|e| format!("{}: {e}", public.display()))?;
    Ok((secret, public))
}

/// Signs `PLUGIN.wasm` with its manifest `PLUGIN.toml`; writes `PLUGIN.sig`.
pub fn sign(key_path: &Path, wasm_path: &Path) -> Result<PathBuf, String> {
    let seed: [u8; 32] = read_hex_file(key_path, SECRET_HEADER, 32)?.try_into().expect("32 bytes");
    let key = SigningKey::from_bytes(&seed);
    let wasm = std::fs::read(wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let manifest_path = wasm_path.with_extension("toml");
    let manifest = std::fs::read(&manifest_path).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let sig = key.sign(&message(&wasm, &manifest));
    let out = wasm_path.with_extension("sig");
    let text = format!(
        "{SIG_HEADER}\nkey {}\nsig {}\n",
        hex::encode(key.verifying_key().to_bytes()),
        hex::encode(sig.to_bytes())
    );
    std::fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// The trust policy in force.
#[derive(Clone, Default)]
pub struct Trust {
    keys: Vec<(String, VerifyingKey)>,
    require_all: bool,
    require_in: Vec<PathBuf>,
}

impl Trust {
    pub fn from_config(c: &config::Trust) -> Result<Self, Error> {
        let mut keys = Vec::new();
        for p in &c.keys {
            let bytes: [u8; 32] =
                read_hex_file(p, PUBLIC_HEADER, 32).map_err(Error::Config)?.try_into().expect("32 bytes");
            let k = VerifyingKey::from_bytes(&bytes).map_err(|e| Error::Config(format!("{}: {e}", p.display())))?;
            keys.push((p.file_stem().and_then(|s| s.to_str()).unwrap_or("key").to_string(), k));
        }
        let require_in =
            c.require_signatures_in.iter().map(|d| d.canonicalize().unwrap_or_else(|_| d.clone())).collect();
        Ok(Self { keys, require_all: c.require_signatures, require_in })
    }

    fn required_in(&self, dir: Option<&Path>) -> bool {
        self.require_all
            || dir.is_some_and(|d| {
                let d = d.canonicalize().unwrap_or_else(|_| d.to_path_buf());
                self.require_in.iter().any(|r| *r == d)
            })
    }

    /// Checks a plugin's signature under the policy. `Ok(Some(signer))` for
    /// a good signature by a trusted key, `Ok(None)` for an unsigned plugin
    /// where none is required.
    pub fn check(
        &self,
        name: &str,
        dir: Option<&Path>,
        wasm: &[u8],
        manifest: &[u8],
        sig: Option<&[u8]>,
    ) -> Result<Option<String>, PluginError> {
        let err = |m: String| PluginError::new(name, ErrorKind::Signature, m);
        let Some(sig) = sig else {
            return if self.required_in(dir) {
                Err(err(format!("unsigned: signatures are required here and {name}.sig is missing")))
            } else {
                Ok(None)
            };
        };
        let text = std::str::from_utf8(sig).map_err(|_| err(format!("{name}.sig is not a signature file")))?;
        let mut lines = text.lines();
        let sig_hex = match (lines.next(), lines.next(), lines.next()) {
            (Some(SIG_HEADER), Some(_key), Some(s)) => s.strip_prefix("sig ").unwrap_or(""),
            _ => return Err(err(format!("{name}.sig is not a signature file"))),
        };
        let sig_bytes: [u8; 64] = hex::decode(sig_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| err(format!("{name}.sig: malformed signature")))?;
        let sig = Signature::from_bytes(&sig_bytes);
        if self.keys.is_empty() {
            if self.required_in(dir) {
                return Err(err("signatures are required but no trusted keys are configured ([trust] keys)".into()));
            }
            tracing::warn!(plugin = name, "signed, but no trusted keys are configured: signature not checked");
            return Ok(None);
        }
        let msg = message(wasm, manifest);
        match self.keys.iter().find(|(_, k)| k.verify(&msg, &sig).is_ok()) {
            Some((signer, _)) => Ok(Some(signer.clone())),
            None => Err(err(
                "signature does not verify with any trusted key: the .wasm or manifest was changed after signing, \
                 or it was signed by an untrusted key"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = keygen(&dir.path().join("vendor")).unwrap();
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"component bytes").unwrap();
        std::fs::write(dir.path().join("p.toml"), b"version = \"1\"\ngrants = []\n").unwrap();
        let sig_path = sign(&dir.path().join("vendor.key"), &wasm).unwrap();
        let sig = std::fs::read(&sig_path).unwrap();
        let trust = Trust::from_config(&config::Trust {
            keys: vec![public],
            require_signatures: true,
            require_signatures_in: vec![],
        })
        .unwrap();
        let manifest = std::fs::read(dir.path().join("p.toml")).unwrap();
        assert_eq!(
            trust.check("p", None, b"component bytes", &manifest, Some(&sig)).unwrap().as_deref(),
            Some("vendor")
        );
        // A widened grant breaks the signature, as does a changed component.
        let e = trust.check("p", None, b"component bytes", b"version = \"1\"\ngrants = [\"prompt\"]\n", Some(&sig));
        assert_eq!(e.unwrap_err().kind, ErrorKind::Signature);
        assert!(trust.check("p", None, b"component bytez", &manifest, Some(&sig)).is_err());
        assert!(trust.check("p", None, b"component bytes", &manifest, None).unwrap_err().message.contains("unsigned"));
        // Another vendor's key is not trusted.
        keygen(&dir.path().join("other")).unwrap();
        let other = sign(&dir.path().join("other.key"), &wasm).unwrap();
        assert!(trust.check("p", None, b"component bytes", &manifest, Some(&std::fs::read(other).unwrap())).is_err());
        assert!(keygen(&dir.path().join("vendor")).is_err(), "never overwrites a key");
    }
}
