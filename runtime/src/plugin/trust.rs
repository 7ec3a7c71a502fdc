//! Signed plugins: ed25519 keys, signatures over a plugin's name, its
//! `.wasm` and its manifest (so grants and limits cannot be widened, and
//! signed files cannot be renamed onto another plugin's name and state,
//! without the vendor's key), and the trust policy of the config's
//! `[trust]` table. The plugins built into the binary are trusted as they
//! are, by their exact name and digests.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::config;
use crate::error::{Error, ErrorKind, PluginError};
use crate::plugin::files::valid_name;
use crate::util::sha256_hex;

const SECRET_HEADER: &str = "vigil-ed25519-secret-key";
const PUBLIC_HEADER: &str = "vigil-ed25519-public-key";
const SIG_HEADER: &str = "vigil-ed25519-signature";

/// What is signed: the plugin's name (its identity and state namespace)
/// and both files' digests, under a domain-separation tag.
fn message(name: &str, wasm: &[u8], manifest: &[u8]) -> Vec<u8> {
    format!(
        "vigil plugin signature v2\nname {name}\nwasm sha256 {}\nmanifest sha256 {}\n",
        sha256_hex(wasm),
        sha256_hex(manifest)
    )
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

/// Signs `NAME.wasm` with its manifest `NAME.toml` under the name `NAME`;
/// writes `NAME.sig`. Run it again to replace a signature of an older
/// format.
pub fn sign(key_path: &Path, wasm_path: &Path) -> Result<PathBuf, String> {
    let seed: [u8; 32] = read_hex_file(key_path, SECRET_HEADER, 32)?.try_into().expect("32 bytes");
    let key = SigningKey::from_bytes(&seed);
    let name = wasm_path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if !valid_name(name) {
        return Err(format!("{}: plugin names are letters, digits, '-' and '_' (at most 64)", wasm_path.display()));
    }
    let wasm = std::fs::read(wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let manifest_path = wasm_path.with_extension("toml");
    let manifest = std::fs::read(&manifest_path).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let sig = key.sign(&message(name, &wasm, &manifest));
    let out = wasm_path.with_extension("sig");
    let text = format!(
        "{SIG_HEADER}\nformat 2\nname {name}\nkey {}\nsig {}\n",
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
    /// (name, wasm sha256, manifest sha256) of plugins trusted as built.
    builtin: Vec<(String, String, String)>,
}

impl Trust {
    /// The policy `[trust]` sets, reading its key files (no built-in plugins).
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
        Ok(Self { keys, require_all: c.require_signatures, require_in, builtin: Vec::new() })
    }

    /// Trusts these exact plugins (name, wasm sha256, manifest sha256)
    /// without a signature: the ones built into the binary.
    pub fn with_builtin(mut self, builtin: Vec<(String, String, String)>) -> Self {
        self.builtin = builtin;
        self
    }

    fn required_in(&self, dir: Option<&Path>) -> bool {
        self.require_all
            || dir.is_some_and(|d| {
                let d = d.canonicalize().unwrap_or_else(|_| d.to_path_buf());
                self.require_in.contains(&d)
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
            // Unsigned: trusted if it is a plugin of this binary, as built.
            let (w, m) = (sha256_hex(wasm), sha256_hex(manifest));
            if self.builtin.iter().any(|(n, bw, bm)| n == name && *bw == w && *bm == m) {
                return Ok(Some("built-in".into()));
            }
            return if self.required_in(dir) {
                Err(err(format!("unsigned: signatures are required here and {name}.sig is missing")))
            } else {
                Ok(None)
            };
        };
        let text = std::str::from_utf8(sig).map_err(|_| err(format!("{name}.sig is not a signature file")))?;
        let fields: Vec<(&str, &str)> = text.lines().skip(1).filter_map(|l| l.split_once(' ')).collect();
        let field = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| v.trim());
        if text.lines().next() != Some(SIG_HEADER) || field("sig").is_none() {
            return Err(err(format!("{name}.sig is not a signature file")));
        }
        if field("format") != Some("2") {
            return Err(err(format!(
                "{name}.sig is an old signature (format 1) that does not bind the plugin's name: \
                 have it signed again with `vigil sign --key KEY {name}.wasm`"
            )));
        }
        let sig_bytes: [u8; 64] = hex::decode(field("sig").unwrap_or(""))
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
        let msg = message(name, wasm, manifest);
        match self.keys.iter().find(|(_, k)| k.verify(&msg, &sig).is_ok()) {
            Some((signer, _)) => Ok(Some(signer.clone())),
            None => {
                let signed_as = field("name").filter(|n| *n != name);
                Err(err(match signed_as {
                    Some(other) => format!(
                        "signed for plugin {other:?}, installed as {name:?}: a signature binds the name, \
                         so signed files cannot take over another plugin's name and state"
                    ),
                    None => "signature does not verify with any trusted key: the .wasm or manifest was changed \
                             after signing, or it was signed by an untrusted key"
                        .into(),
                }))
            }
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

    #[test]
    fn a_signature_binds_the_plugin_name() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = keygen(&dir.path().join("vendor")).unwrap();
        let wasm = dir.path().join("velocity.wasm");
        std::fs::write(&wasm, b"velocity bytes").unwrap();
        std::fs::write(dir.path().join("velocity.toml"), b"version = \"1\"\n").unwrap();
        let sig = std::fs::read(sign(&secret, &wasm).unwrap()).unwrap();
        let trust = Trust::from_config(&config::Trust { keys: vec![public], ..Default::default() }).unwrap();
        let m = b"version = \"1\"\n";
        assert!(trust.check("velocity", None, b"velocity bytes", m, Some(&sig)).is_ok());
        // The same three files copied over another plugin's name.
        let e = trust.check("reasoning-elicitation", None, b"velocity bytes", m, Some(&sig)).unwrap_err();
        assert!(e.message.contains("signed for plugin \"velocity\""), "{e}");
        // A format-1 signature (no name) is refused with the way out.
        let old = String::from_utf8(sig).unwrap().replace("format 2\n", "").replace("name velocity\n", "");
        let e = trust.check("velocity", None, b"velocity bytes", m, Some(old.as_bytes())).unwrap_err();
        assert!(e.message.contains("vigil sign"), "{e}");
    }

    #[test]
    fn built_in_plugins_are_trusted_only_as_built() {
        let trust = Trust::from_config(&config::Trust { require_signatures: true, ..Default::default() })
            .unwrap()
            .with_builtin(vec![("p".into(), sha256_hex(b"w"), sha256_hex(b"m"))]);
        assert_eq!(trust.check("p", None, b"w", b"m", None).unwrap().as_deref(), Some("built-in"));
        assert!(trust.check("q", None, b"w", b"m", None).is_err(), "not under another name");
        assert!(trust.check("p", None, b"w", b"m2", None).is_err(), "not with a changed manifest");
    }
}
