//! Headers llama.cpp would assert on (and abort the whole process for) are refused by our
//! checks before it sees them: each mutation of the tiny model's hyper-parameters must come
//! back as one-line load error, in this process, which would otherwise die.

use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_llama::{EngineOptions, LlamaEngine};

/// The tiny model with the u32 value of metadata `key` replaced by `value` (patched in place:
/// a GGUF key is its length, its bytes, a type id, then the value).
fn patched(dir: &std::path::Path, key: &str, value: u32) -> std::path::PathBuf {
    let base = dir.join("tiny.gguf");
    if !base.exists() {
        write_tiny_llama(&base, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    }
    let mut bytes = std::fs::read(&base).unwrap();
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("{key} not in the tiny model"));
    let type_at = at + needle.len();
    assert_eq!(
        &bytes[type_at..type_at + 4],
        &4u32.to_le_bytes(),
        "{key} is a u32"
    );
    bytes[type_at + 4..type_at + 8].copy_from_slice(&value.to_le_bytes());
    let path = dir.join(format!("{key}-{value}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn inconsistent_hyper_parameters_are_refused_before_llama_cpp_loads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        n_threads: 1,
        n_ctx: 128,
        ..EngineOptions::default()
    };
    for (key, value, says) in [
        ("llama.block_count", 0, "llama.block_count is 0"),
        (
            "llama.block_count",
            3,
            "tensor blk.2.attn_q.weight is missing",
        ),
        ("llama.block_count", 1, "belongs to a layer beyond"),
        ("llama.context_length", 0, "llama.context_length is 0"),
        ("llama.attention.head_count", 3, "is not a multiple of"),
        ("llama.attention.head_count_kv", 3, "is not a multiple of"),
        (
            "llama.attention.head_count",
            0,
            "llama.attention.head_count is 0",
        ),
        (
            "llama.embedding_length",
            96,
            "tensor token_embd.weight has shape",
        ),
        ("llama.feed_forward_length", 64, "has shape"),
    ] {
        let path = patched(dir.path(), key, value);
        let err = match LlamaEngine::load(&path, options.clone()) {
            Ok(_) => panic!("{key} = {value} was loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(says), "{key} = {value}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // The unpatched model still loads.
    let ok = patched(dir.path(), "llama.block_count", 2);
    LlamaEngine::load(&ok, options).unwrap();
}

#[test]
fn a_vocabulary_with_a_repeated_token_is_refused_before_llama_cpp() {
    // llama.cpp asserts that token strings are unique (found by the GGUF fuzzer,
    // tests/hostile_gguf.rs): here byte token <0x01> is renamed <0x02>.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let mut bytes = std::fs::read(&base).unwrap();
    let mut needle = 6u64.to_le_bytes().to_vec();
    needle.extend(b"<0x01>");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    bytes[at + needle.len() - 2] = b'2';
    let path = dir.path().join("repeated.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = match LlamaEngine::load(&path, EngineOptions::default()) {
        Ok(_) => panic!("a repeated token was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("repeats token 6 at 7"), "{err}");
}
