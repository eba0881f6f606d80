//! The GGUF models already on this machine: LM Studio's models folder, Ollama's store, the
//! llama.cpp and Hugging Face caches, and folders the user adds in Settings. Nothing is copied:
//! registering a found model records its path (for Ollama, the model layer's blob).

use crate::Service;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Where a found model lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ModelSource {
    LmStudio,
    Ollama,
    LlamaCpp,
    HuggingFace,
    Folder,
}

/// A GGUF file found on this machine, or an entry that looks like one and cannot be used.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct FoundModel {
    pub source: ModelSource,
    /// What the source calls it: `llama3.2:1b` (Ollama), `publisher/repo/file.gguf` (LM Studio),
    /// `org/repo/file.gguf` (Hugging Face), the path below the folder otherwise.
    pub name: String,
    /// The GGUF file (an Ollama model's blob); for an unusable entry, the manifest or link.
    pub path: String,
    #[ts(type = "number | null")]
    pub size: Option<u64>,
    pub architecture: Option<String>,
    #[ts(type = "number | null")]
    pub parameter_count: Option<u64>,
    pub quantization: Option<String>,
    /// EVOLVE can train it, so it can be registered.
    pub trainable: bool,
    /// Why it cannot be read or trained; `None` when it is trainable.
    pub problem: Option<String>,
    /// The registered model with this file.
    pub registered_id: Option<i64>,
}

/// The folders searched, by source.
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub lm_studio: Vec<PathBuf>,
    /// Ollama model roots (each with `manifests/` and `blobs/`).
    pub ollama: Vec<PathBuf>,
    pub llama_cpp: Vec<PathBuf>,
    /// Hugging Face hub caches (`models--org--repo/snapshots/<rev>/…`).
    pub hugging_face: Vec<PathBuf>,
    pub folders: Vec<PathBuf>,
}

impl Places {
    /// The default places under `home`, with the tools' own variables read from `env`
    /// (`OLLAMA_MODELS`, `LLAMA_CACHE`, `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`).
    pub fn under_home(home: &Path, env: impl Fn(&str) -> Option<String>) -> Places {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty()).map(PathBuf::from);
        let cache = var("XDG_CACHE_HOME").unwrap_or_else(|| home.join(".cache"));
        let hf = var("HF_HUB_CACHE")
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .unwrap_or_else(|| cache.join("huggingface/hub"));
        Places {
            lm_studio: vec![
                home.join(".lmstudio/models"),
                cache.join("lm-studio/models"),
            ],
            ollama: vec![var("OLLAMA_MODELS").unwrap_or_else(|| home.join(".ollama/models"))],
            llama_cpp: vec![var("LLAMA_CACHE").unwrap_or_else(|| cache.join("llama.cpp"))],
            hugging_face: vec![hf],
            folders: Vec::new(),
        }
    }

    /// This machine's places, plus `folders` (the user's, from Settings).
    pub fn of_this_machine(folders: &[String]) -> Places {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        let mut places = Places::under_home(&home, |k| std::env::var(k).ok());
        // Ollama's Linux service keeps its store under its own user.
        let service = PathBuf::from("/usr/share/ollama/.ollama/models");
        if !places.ollama.contains(&service) {
            places.ollama.push(service);
        }
        places.folders = folders
            .iter()
            .filter(|f| !f.trim().is_empty())
            .map(|f| PathBuf::from(f.trim()))
            .collect();
        places
    }

    /// Where an export into LM Studio goes: its models folder that exists, else the current one.
    pub fn lm_studio_target(&self) -> Option<&Path> {
        self.lm_studio
            .iter()
            .find(|p| p.is_dir())
            .or(self.lm_studio.first())
            .map(PathBuf::as_path)
    }
}

/// Folders deeper than this below a root are not searched (and symlinked folders never are).
const MAX_DEPTH: usize = 6;

/// Every model found in `places`, by source and name; one entry per file.
pub fn discover(places: &Places) -> Vec<FoundModel> {
    let mut found = Vec::new();
    for root in &places.lm_studio {
        walk_ggufs(root, ModelSource::LmStudio, &mut found, |rel| {
            rel.to_string()
        });
    }
    for root in &places.ollama {
        found.extend(ollama_models(root).into_iter().map(|m| m.found));
    }
    for root in &places.llama_cpp {
        walk_ggufs(root, ModelSource::LlamaCpp, &mut found, |rel| {
            rel.to_string()
        });
    }
    for root in &places.hugging_face {
        walk_ggufs(root, ModelSource::HuggingFace, &mut found, hf_name);
    }
    for root in &places.folders {
        walk_ggufs(root, ModelSource::Folder, &mut found, |rel| rel.to_string());
    }
    // The same file reached twice (a Hugging Face blob under two revisions, a folder inside
    // LM Studio's): listed once, under the first source.
    let mut seen = HashSet::new();
    found.retain(|m| m.problem.is_some() && m.size.is_none() || seen.insert(m.path.clone()));
    found.sort_by(|a, b| (a.source, &a.name).cmp(&(b.source, &b.name)));
    found
}

impl Service {
    /// [`discover`] with each model's registration looked up.
    pub fn discover_models(&self, places: &Places) -> Result<Vec<FoundModel>> {
        let registered: HashMap<PathBuf, i64> = self
            .list_models()?
            .into_iter()
            .map(|m| (canonical(Path::new(&m.path)), m.id.0))
            .collect();
        let mut found = discover(places);
        for m in &mut found {
            m.registered_id = registered.get(&canonical(Path::new(&m.path))).copied();
        }
        Ok(found)
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// `models--org--repo/snapshots/<rev>/dir/file.gguf` → `org/repo/dir/file.gguf`.
fn hf_name(rel: &str) -> String {
    let mut parts = rel.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(repo), Some("snapshots"), Some(_rev)) if repo.starts_with("models--") => {
            let repo = repo.trim_start_matches("models--").replace("--", "/");
            std::iter::once(repo.as_str())
                .chain(parts)
                .collect::<Vec<_>>()
                .join("/")
        }
        _ => rel.to_string(),
    }
}

/// `*.gguf` files below `root`. Hugging Face keeps its files in `blobs/` under hashed names and
/// links them from `snapshots/`: only the links carry the name, so `blobs/` is skipped.
fn walk_ggufs(
    root: &Path,
    source: ModelSource,
    out: &mut Vec<FoundModel>,
    name: impl Fn(&str) -> String,
) {
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.file_type() else {
                continue;
            };
            if meta.is_dir() {
                let skip = source == ModelSource::HuggingFace
                    && depth == 1
                    && entry.file_name() == "blobs";
                if depth + 1 < MAX_DEPTH && !skip {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            let file_name = entry.file_name().to_string_lossy().to_lowercase();
            if !file_name.ends_with(".gguf") || file_name.starts_with("mmproj") {
                continue;
            }
            if split_part(&file_name).is_some_and(|(part, _)| part > 1) {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(inspect(source, name(&rel.to_string_lossy()), &path));
        }
    }
}

/// `…-00002-of-00005.gguf` → (2, 5): llama.cpp's split files.
fn split_part(file_name: &str) -> Option<(u32, u32)> {
    let stem = file_name.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let part = rest.rsplit_once('-')?.1;
    (part.len() == 5 && total.len() == 5).then_some(())?;
    Some((part.parse().ok()?, total.parse().ok()?))
}

/// An entry that cannot be used, with why.
fn unusable(source: ModelSource, name: String, path: &Path, problem: String) -> FoundModel {
    FoundModel {
        source,
        name,
        path: path.display().to_string(),
        size: None,
        architecture: None,
        parameter_count: None,
        quantization: None,
        trainable: false,
        problem: Some(problem),
        registered_id: None,
    }
}

/// Reads `path`'s GGUF header and whether EVOLVE can train it.
fn inspect(source: ModelSource, name: String, path: &Path) -> FoundModel {
    let real = match path.canonicalize() {
        Ok(real) => real,
        Err(_) if path.is_symlink() => {
            let to = std::fs::read_link(path).unwrap_or_default();
            let problem = format!("a dangling symbolic link (to {})", to.display());
            return unusable(source, name, path, problem);
        }
        Err(e) => return unusable(source, name, path, format!("cannot open it: {e}")),
    };
    let file = match crate::models::inspect(&real) {
        Ok(file) => file,
        Err(e) => return unusable(source, name, &real, format!("not a readable GGUF: {e}")),
    };
    let summary = file.summary();
    let mut problem = crate::models::check_trainable(&file)
        .err()
        .map(|e| format!("{e:#}"));
    if let Some((_, total)) = split_part(&name.to_lowercase()) {
        problem = Some(format!(
            "split into {total} files: merge them first (llama-gguf-split --merge)"
        ));
    }
    FoundModel {
        source,
        name,
        path: real.display().to_string(),
        size: Some(summary.file_size),
        architecture: Some(summary.architecture),
        parameter_count: Some(summary.parameter_count),
        quantization: Some(summary.quantization),
        trainable: problem.is_none(),
        problem,
        registered_id: None,
    }
}

/// One Ollama model: what discovery lists, and the manifest's other layers (for an export that
/// builds on it).
#[derive(Debug, Clone)]
pub struct OllamaModel {
    pub found: FoundModel,
    /// The prompt template (Go template syntax), system prompt and parameters of the model.
    pub template: Option<String>,
    pub system: Option<String>,
    pub parameters: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    media_type: String,
    digest: String,
}

const MODEL_LAYER: &str = "application/vnd.ollama.image.model";

/// The models of the Ollama store `root`: `manifests/<host>/<namespace>/<model>/<tag>`, each a
/// JSON manifest whose model layer is the blob `blobs/sha256-<hex>`.
pub fn ollama_models(root: &Path) -> Vec<OllamaModel> {
    let manifests = root.join("manifests");
    manifest_files(&manifests)
        .iter()
        .map(|file| match read_manifest(root, &manifests, file) {
            Ok((name, blob, manifest)) => ollama_model(root, name, &blob, &manifest),
            Err((name, why)) => OllamaModel {
                found: unusable(ModelSource::Ollama, name, file, why),
                template: None,
                system: None,
                parameters: BTreeMap::new(),
            },
        })
        .collect()
}

fn manifest_files(manifests: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![(manifests.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() && depth < 4 => stack.push((entry.path(), depth + 1)),
                Ok(t) if !t.is_dir() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// How Ollama itself shows a name: `model:tag`, `namespace/model:tag` outside `library`, the
/// host in front when it is not the default registry.
fn ollama_name(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [host, ns, model, tag] if host == "registry.ollama.ai" && ns == "library" => {
            format!("{model}:{tag}")
        }
        [host, ns, model, tag] if host == "registry.ollama.ai" => format!("{ns}/{model}:{tag}"),
        [host, ns, model, tag] => format!("{host}/{ns}/{model}:{tag}"),
        _ => parts.join("/"),
    }
}

/// The blob a manifest layer names, when its digest is a sha256.
fn layer_blob(root: &Path, layer: &Layer) -> Option<PathBuf> {
    let hex = layer.digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| root.join("blobs").join(format!("sha256-{hex}")))
}

/// A manifest read as far as its model's blob (name, blob, manifest), or the model's name and
/// why it cannot be used. The blob's GGUF header is not read here.
fn read_manifest(
    root: &Path,
    manifests: &Path,
    file: &Path,
) -> Result<(String, PathBuf, Manifest), (String, String)> {
    let name = ollama_name(file.strip_prefix(manifests).unwrap_or(file));
    let broken = |why: String| (name.clone(), why);
    let manifest: Manifest = std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| broken(format!("a broken manifest: {e}")))?;
    let Some(model) = manifest.layers.iter().find(|l| l.media_type == MODEL_LAYER) else {
        return Err(broken(
            "the manifest has no model layer (a model that runs remotely?)".into(),
        ));
    };
    let Some(blob) = layer_blob(root, model) else {
        return Err(broken(format!("a bad digest '{}'", model.digest)));
    };
    if !blob.exists() {
        return Err(broken(format!(
            "its model blob {} is missing",
            blob.display()
        )));
    }
    Ok((name, blob, manifest))
}

/// The model a readable manifest describes: its blob inspected, its other layers read.
fn ollama_model(root: &Path, name: String, blob: &Path, manifest: &Manifest) -> OllamaModel {
    let text = |media: &str| {
        manifest
            .layers
            .iter()
            .find(|l| l.media_type == media)
            .and_then(|l| layer_blob(root, l))
            .and_then(|p| std::fs::read_to_string(p).ok())
    };
    OllamaModel {
        found: inspect(ModelSource::Ollama, name, blob),
        template: text("application/vnd.ollama.image.template"),
        system: text("application/vnd.ollama.image.system"),
        parameters: text("application/vnd.ollama.image.params")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
    }
}

/// The Ollama model whose weights are the file `path`, if any in `places`. Only that model's
/// blob is inspected (an export needs one model, not every header of the store).
pub fn ollama_model_of(path: &Path, places: &Places) -> Option<OllamaModel> {
    let target = canonical(path);
    for root in &places.ollama {
        let manifests = root.join("manifests");
        for file in manifest_files(&manifests) {
            if let Ok((name, blob, manifest)) = read_manifest(root, &manifests, &file)
                && canonical(&blob) == target
            {
                let model = ollama_model(root, name, &blob, &manifest);
                return model.found.size.is_some().then_some(model);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny-task.gguf");

    fn put(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A valid GGUF of an architecture EVOLVE cannot train.
    fn untrainable(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = evolve_gguf::GgufWriter::new();
        w.add_metadata(
            "general.architecture",
            evolve_gguf::Value::String("bert".into()),
        );
        w.write_to_path(path).unwrap();
    }

    fn manifest(layers: &[(&str, &str)]) -> String {
        let layers: Vec<_> = layers
            .iter()
            .map(|(m, d)| serde_json::json!({"mediaType": m, "digest": d, "size": 1}))
            .collect();
        serde_json::json!({"schemaVersion": 2, "layers": layers}).to_string()
    }

    fn digest(byte: char) -> String {
        format!("sha256:{}", byte.to_string().repeat(64))
    }

    /// LM Studio, Ollama, llama.cpp and Hugging Face layouts under a fake home, with a broken
    /// manifest, a non-GGUF blob, a dangling link, a projector, split files and an untrainable
    /// model among the good ones.
    fn fake_home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let tiny = std::fs::read(TINY).unwrap();
        let lms = h.join(".lmstudio/models");
        put(&lms.join("bartowski/Tiny-GGUF/tiny-Q8_0.gguf"), &tiny);
        put(&lms.join("bartowski/Tiny-GGUF/mmproj-tiny-f16.gguf"), &tiny);
        put(&lms.join("bartowski/Tiny-GGUF/README.md"), b"hello");
        untrainable(&lms.join("nomic/Embed-GGUF/embed.gguf"));
        put(&lms.join("big/Huge-GGUF/huge-00001-of-00002.gguf"), &tiny);
        put(&lms.join("big/Huge-GGUF/huge-00002-of-00002.gguf"), b"rest");
        symlink(
            h.join("gone.gguf"),
            lms.join("bartowski/Tiny-GGUF/gone.gguf"),
        )
        .unwrap();
        put(&h.join(".cache/lm-studio/models/old/Repo/old.gguf"), &tiny);

        let ollama = h.join(".ollama/models");
        let lib = ollama.join("manifests/registry.ollama.ai/library");
        let blob = |d: &str| ollama.join("blobs").join(d.replace(':', "-"));
        put(&blob(&digest('a')), &tiny);
        put(&blob(&digest('b')), b"{{ .Prompt }}");
        put(
            &blob(&digest('c')),
            br#"{"stop": ["<|im_end|>"], "temperature": 0.6}"#,
        );
        put(&blob(&digest('d')), b"not a gguf at all");
        let template = "application/vnd.ollama.image.template";
        let params = "application/vnd.ollama.image.params";
        put(
            &lib.join("tiny/latest"),
            manifest(&[
                (MODEL_LAYER, &digest('a')),
                (template, &digest('b')),
                (params, &digest('c')),
            ])
            .as_bytes(),
        );
        put(&lib.join("tiny/q4"), b"");
        put(
            &ollama.join("manifests/registry.ollama.ai/someone/fine/v1"),
            manifest(&[(MODEL_LAYER, &digest('d'))]).as_bytes(),
        );
        put(
            &ollama.join("manifests/hf.co/org/repo/Q4_K_M"),
            manifest(&[(MODEL_LAYER, &digest('e'))]).as_bytes(),
        );
        put(&lib.join("broken/latest"), b"{\"layers\": [");
        put(
            &lib.join("cloud/latest"),
            manifest(&[(template, &digest('b'))]).as_bytes(),
        );

        put(&h.join(".cache/llama.cpp/ggml-org_tiny_tiny.gguf"), &tiny);
        let hf = h.join(".cache/huggingface/hub/models--org--Tiny-GGUF");
        put(&hf.join("blobs/0123abcd"), &tiny);
        for rev in ["rev1", "rev2"] {
            let snap = hf.join("snapshots").join(rev);
            std::fs::create_dir_all(&snap).unwrap();
            symlink(hf.join("blobs/0123abcd"), snap.join("tiny.gguf")).unwrap();
        }
        home
    }

    fn by_name<'a>(found: &'a [FoundModel], name: &str) -> &'a FoundModel {
        found
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not found in {found:#?}"))
    }

    #[test]
    fn finds_lm_studio_ollama_llama_cpp_and_hugging_face_models_and_says_what_is_unusable() {
        let home = fake_home();
        let places = Places::under_home(home.path(), |_| None);
        let found = discover(&places);
        let names: Vec<_> = found.iter().map(|m| (m.source, m.name.as_str())).collect();
        use ModelSource::*;
        assert_eq!(
            names,
            [
                (LmStudio, "bartowski/Tiny-GGUF/gone.gguf"),
                (LmStudio, "bartowski/Tiny-GGUF/tiny-Q8_0.gguf"),
                (LmStudio, "big/Huge-GGUF/huge-00001-of-00002.gguf"),
                (LmStudio, "nomic/Embed-GGUF/embed.gguf"),
                (LmStudio, "old/Repo/old.gguf"),
                (Ollama, "broken:latest"),
                (Ollama, "cloud:latest"),
                (Ollama, "hf.co/org/repo:Q4_K_M"),
                (Ollama, "someone/fine:v1"),
                (Ollama, "tiny:latest"),
                (Ollama, "tiny:q4"),
                (LlamaCpp, "ggml-org_tiny_tiny.gguf"),
                (HuggingFace, "org/Tiny-GGUF/tiny.gguf"),
            ],
            "projectors, later split parts, other files and a second link to the same blob are not listed"
        );
        let good = by_name(&found, "tiny:latest");
        assert!(good.trainable && good.problem.is_none(), "{good:?}");
        assert_eq!(good.architecture.as_deref(), Some("llama"));
        assert_eq!(good.size, Some(std::fs::metadata(TINY).unwrap().len()));
        assert!(
            good.path
                .ends_with(&format!("blobs/sha256-{}", "a".repeat(64)))
        );
        let hf = by_name(&found, "org/Tiny-GGUF/tiny.gguf");
        assert!(
            hf.trainable && hf.path.ends_with("blobs/0123abcd"),
            "{hf:?}"
        );
        let problem = |name: &str| by_name(&found, name).problem.clone().unwrap_or_default();
        assert!(problem("bartowski/Tiny-GGUF/gone.gguf").contains("dangling"));
        assert!(problem("broken:latest").contains("broken manifest"));
        assert!(problem("someone/fine:v1").contains("not a readable GGUF"));
        assert!(problem("hf.co/org/repo:Q4_K_M").contains("missing"));
        assert!(problem("cloud:latest").contains("no model layer"));
        assert!(problem("tiny:q4").contains("broken manifest"));
        assert!(problem("big/Huge-GGUF/huge-00001-of-00002.gguf").contains("split into 2 files"));
        let embed = by_name(&found, "nomic/Embed-GGUF/embed.gguf");
        assert!(
            !embed.trainable
                && problem("nomic/Embed-GGUF/embed.gguf")
                    .contains("unsupported architecture 'bert'")
        );
        assert_eq!(embed.architecture.as_deref(), Some("bert"));
        assert!(found.iter().all(|m| m.trainable == m.problem.is_none()));
    }

    #[test]
    fn the_tools_variables_and_added_folders_are_honoured() {
        let home = fake_home();
        let elsewhere = tempfile::tempdir().unwrap();
        let moved = elsewhere.path().join("ollama");
        std::fs::rename(home.path().join(".ollama/models"), &moved).unwrap();
        put(
            &elsewhere.path().join("mine/deep/er/model.gguf"),
            &std::fs::read(TINY).unwrap(),
        );
        let env = |k: &str| (k == "OLLAMA_MODELS").then(|| moved.display().to_string());
        let mut places = Places::under_home(home.path(), env);
        places.folders = vec![elsewhere.path().join("mine")];
        let found = discover(&places);
        assert!(by_name(&found, "tiny:latest").trainable);
        let mine = by_name(&found, "deep/er/model.gguf");
        assert_eq!((mine.source, mine.trainable), (ModelSource::Folder, true));
        let ollama =
            ollama_model_of(Path::new(&by_name(&found, "tiny:latest").path), &places).unwrap();
        assert_eq!(ollama.template.as_deref(), Some("{{ .Prompt }}"));
        assert_eq!(ollama.parameters["stop"], serde_json::json!(["<|im_end|>"]));
        assert!(ollama_model_of(Path::new(TINY), &places).is_none());
    }

    #[test]
    fn split_parts_are_recognised_by_name() {
        assert_eq!(split_part("m-00002-of-00005.gguf"), Some((2, 5)));
        assert_eq!(split_part("m-q4_k_m.gguf"), None);
        assert_eq!(hf_name("models--a--b/snapshots/r/x/y.gguf"), "a/b/x/y.gguf");
    }
}
