//! Every way a file can be wrong yields one clear line naming the file; nothing panics.

use std::path::{Path, PathBuf};

use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_gguf::{GgufError, read_path};

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Assert the message starts with `prefix`, names the path, and is one line.
fn assert_error(path: &Path, prefix: &str) -> String {
    let err = read_path(path).expect_err("must be rejected");
    let msg = err.to_string();
    assert!(
        msg.starts_with(prefix),
        "expected prefix {prefix:?}, got {msg:?}"
    );
    assert!(
        msg.contains(&path.display().to_string()),
        "path not named: {msg}"
    );
    assert!(!msg.contains('\n'), "must be one line: {msg}");
    msg
}

fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(tensors.to_le_bytes());
    b.extend(kvs.to_le_bytes());
    b
}

fn gguf_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

fn tiny(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "empty.gguf", b"");
    let msg = assert_error(&path, "not a GGUF file: ");
    assert!(msg.ends_with(" is empty"), "{msg}");
}

#[test]
fn text_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "notes.txt", b"hello world\n");
    let msg = assert_error(&path, "not a GGUF file: ");
    assert!(
        msg.ends_with("(starts with \"hell\", expected \"GGUF\")"),
        "{msg}"
    );
}

#[test]
fn binary_magic_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "bin", &[0x7F, b'E', b'L', b'F', 0, 0]);
    let msg = assert_error(&path, "not a GGUF file: ");
    assert!(msg.contains("starts with \"\\x7fELF\""), "{msg}");
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_error(&dir.path().join("nope.gguf"), "cannot read ");
}

#[test]
fn truncated_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "short.gguf", b"GG");
    assert_error(&path, "truncated GGUF file: ");
    let path = put(dir.path(), "short2.gguf", &header(3, 0, 0)[..12]);
    let msg = assert_error(&path, "truncated GGUF file: ");
    assert!(
        msg.contains("ends at byte 12 while reading the header"),
        "{msg}"
    );
}

#[test]
fn truncated_in_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = tiny(dir.path());
    let path = put(dir.path(), "cut-meta.gguf", &bytes[..300]);
    let msg = assert_error(&path, "truncated GGUF file: ");
    assert!(
        msg.contains("ends at byte 300 while reading metadata key "),
        "{msg}"
    );
}

#[test]
fn truncated_in_tensor_infos() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = tiny(dir.path());
    // The first tensor name only occurs in the tensor-info section.
    let at = bytes
        .windows(17)
        .position(|w| w == b"token_embd.weight")
        .unwrap()
        + 30;
    let path = put(dir.path(), "cut-infos.gguf", &bytes[..at]);
    let msg = assert_error(&path, "truncated GGUF file: ");
    assert!(
        msg.contains(&format!(
            "ends at byte {at} while reading tensor info 1 of 21"
        )),
        "{msg}"
    );
}

#[test]
fn truncated_in_data_region() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = tiny(dir.path());
    let cut = bytes.len() - 100;
    let path = put(dir.path(), "cut-data.gguf", &bytes[..cut]);
    let msg = assert_error(&path, "truncated GGUF file: ");
    assert!(
        msg.contains(&format!(
            "needs bytes up to {} but the file has {cut}",
            bytes.len()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("tensor 'blk.1.ffn_down.weight'"),
        "last tensor is the one cut: {msg}"
    );
}

#[test]
fn unsupported_versions() {
    let dir = tempfile::tempdir().unwrap();
    for v in [1u32, 4] {
        let path = put(dir.path(), &format!("v{v}.gguf"), &header(v, 0, 0));
        let msg = assert_error(&path, &format!("unsupported GGUF version {v} in "));
        assert!(msg.ends_with("(supported: 2, 3)"), "{msg}");
    }
    // Version 2 has the same layout and is accepted.
    let path = put(dir.path(), "v2.gguf", &header(2, 0, 0));
    assert_eq!(read_path(&path).unwrap().version, 2);
}

#[test]
fn unknown_tensor_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = header(3, 1, 0);
    b.extend(gguf_string("weird.weight"));
    b.extend(1u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(99u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len() + 256, 0);
    let path = put(dir.path(), "type99.gguf", &b);
    assert_error(
        &path,
        "unsupported tensor type id 99 for tensor 'weird.weight' in ",
    );
    assert!(matches!(
        read_path(&path),
        Err(GgufError::UnknownTensorType { id: 99, .. })
    ));
}

#[test]
fn unknown_metadata_value_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = header(3, 0, 1);
    b.extend(gguf_string("general.mystery"));
    b.extend(42u32.to_le_bytes());
    b.extend([0u8; 16]);
    let path = put(dir.path(), "vt42.gguf", &b);
    let msg = assert_error(&path, "corrupt GGUF file: ");
    assert!(
        msg.ends_with("(unknown metadata value type 42 for key 'general.mystery')"),
        "{msg}"
    );

    // The same inside an array's element type.
    let mut b = header(3, 0, 1);
    b.extend(gguf_string("general.list"));
    b.extend(9u32.to_le_bytes());
    b.extend(77u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend([0u8; 16]);
    let path = put(dir.path(), "arr77.gguf", &b);
    let msg = assert_error(&path, "corrupt GGUF file: ");
    assert!(
        msg.contains("unknown metadata value type 77 for key 'general.list'"),
        "{msg}"
    );
}

#[test]
fn absurd_lengths_are_truncation_not_allocation() {
    let dir = tempfile::tempdir().unwrap();
    // A key claiming u64::MAX bytes.
    let mut b = header(3, 0, 1);
    b.extend(u64::MAX.to_le_bytes());
    b.extend(b"abc");
    let msg = assert_error(
        &put(dir.path(), "hugekey.gguf", &b),
        "truncated GGUF file: ",
    );
    assert!(msg.contains("metadata key 1 of 1"), "{msg}");
    // Billions of KVs / tensors declared in a tiny file.
    let msg = assert_error(
        &put(dir.path(), "manykv.gguf", &header(3, 0, 1 << 40)),
        "truncated GGUF file: ",
    );
    assert!(
        msg.contains("ends at byte 24 while reading metadata key 1 of 1099511627776"),
        "{msg}"
    );
    assert_error(
        &put(dir.path(), "manyt.gguf", &header(3, u64::MAX, 0)),
        "truncated GGUF file: ",
    );
    // An array of 2^60 u32s.
    let mut b = header(3, 0, 1);
    b.extend(gguf_string("k"));
    b.extend(9u32.to_le_bytes());
    b.extend(4u32.to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    let msg = assert_error(
        &put(dir.path(), "hugearr.gguf", &b),
        "truncated GGUF file: ",
    );
    assert!(
        msg.contains("1152921504606846976 array elements declared at byte"),
        "{msg}"
    );
}

#[test]
fn structural_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tensor = |n_dims: u32, dims: &[u64], ty: u32, offset: u64| {
        let mut b = header(3, 1, 0);
        b.extend(gguf_string("t"));
        b.extend(n_dims.to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        b.resize(b.len() + 4096, 0);
        b
    };
    let msg = assert_error(
        &put(dir.path(), "dims5.gguf", &tensor(5, &[1; 5], 0, 0)),
        "corrupt GGUF file: ",
    );
    assert!(msg.contains("5 dimensions"), "{msg}");
    let msg = assert_error(
        &put(dir.path(), "unaligned.gguf", &tensor(1, &[4], 0, 3)),
        "corrupt GGUF file: ",
    );
    assert!(msg.contains("not a multiple of the alignment 32"), "{msg}");
    let msg = assert_error(
        &put(dir.path(), "q8row.gguf", &tensor(1, &[33], 8, 0)),
        "corrupt GGUF file: ",
    );
    assert!(msg.contains("multiple of 32"), "{msg}");
    let msg = assert_error(
        &put(
            dir.path(),
            "overflow.gguf",
            &tensor(2, &[1 << 40, 1 << 40], 0, 0),
        ),
        "corrupt GGUF file: ",
    );
    assert!(msg.contains("overflow"), "{msg}");
    let msg = assert_error(
        &put(dir.path(), "far.gguf", &tensor(1, &[4], 0, u64::MAX - 31)),
        "",
    );
    assert!(
        msg.starts_with("corrupt GGUF file: ") || msg.starts_with("truncated GGUF file: "),
        "{msg}"
    );
}

#[test]
fn every_97th_truncation_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = tiny(dir.path());
    let path = dir.path().join("cut.gguf");
    let mut checked = 0;
    for len in (0..bytes.len()).step_by(97) {
        std::fs::write(&path, &bytes[..len]).unwrap();
        match read_path(&path) {
            Err(GgufError::Empty { .. } | GgufError::Truncated { .. }) => checked += 1,
            other => panic!("cut at {len}: expected empty/truncated, got {other:?}"),
        }
    }
    assert!(checked > 1000, "only {checked} cuts");
}

#[test]
fn a_header_of_more_values_than_any_model_has_is_refused_before_it_costs_memory() {
    // One u8 array of 16 Mi + 1 elements: decoded as values it would take ~0.5 GB.
    let dir = tempfile::tempdir().unwrap();
    let n = evolve_gguf::MAX_METADATA_VALUES + 1;
    let mut b = header(3, 0, 1);
    b.extend(gguf_string("bloat"));
    b.extend(9u32.to_le_bytes()); // array
    b.extend(0u32.to_le_bytes()); // of u8
    b.extend(n.to_le_bytes());
    b.resize(b.len() + n as usize, 7);
    let started = std::time::Instant::now();
    let msg = assert_error(&put(dir.path(), "bloat.gguf", &b), "corrupt GGUF file: ");
    assert!(msg.contains("more than 16777216 values"), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn many_metadata_keys_are_checked_for_duplicates_in_linear_time() {
    // 200,000 distinct keys: a quadratic duplicate check would take minutes.
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000u64;
    let mut b = header(3, 0, n + 1);
    for i in 0..n {
        b.extend(gguf_string(&format!("k{i}")));
        b.extend(4u32.to_le_bytes()); // u32
        b.extend(1u32.to_le_bytes());
    }
    b.extend(gguf_string("k7"));
    b.extend(4u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    let started = std::time::Instant::now();
    let msg = assert_error(&put(dir.path(), "keys.gguf", &b), "corrupt GGUF file: ");
    assert!(msg.contains("duplicate metadata key 'k7'"), "{msg}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
