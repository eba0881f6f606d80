//! Mutated GGUF files through the CLI's entry points, each in a child process: the tiny model
//! and a LoRA adapter for it with header bytes flipped, header words set to extreme values,
//! tensor data scribbled over and files cut short. Whatever the mutation, `evolve models add`
//! and `evolve chat` (our checks, then llama.cpp) must end with an exit code — never a signal
//! (a `GGML_ASSERT` abort) nor a Rust panic — and a failure must be one `error:` line.
//!
//! The cases are seeded, so a failure names a reproducible case. `EVOLVE_FUZZ_CASES` runs more
//! (docs/security.md records a long run); `EVOLVE_FUZZ_KEEP=DIR` keeps the files that broke.

use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_gguf::{GgufWriter, TensorData, Value};
use std::path::Path;
use std::process::Command;

/// A small deterministic generator (SplitMix64): cases must be reproducible from their number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `bytes`, whose header (metadata and tensor infos) ends at `header_end`.
fn mutate(bytes: &[u8], header_end: usize, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut out = bytes.to_vec();
    let what = match rng.below(5) {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = rng.below(header_end);
                out[at] ^= 1 << rng.below(8);
            }
            format!("{n} header bits flipped")
        }
        1 | 2 => {
            // A count, a length, a type id or a dimension, set to something extreme.
            const EXTREMES: [u64; 9] =
                [0, 1, 2, 3, 255, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 40, u64::MAX];
            let at = rng.below(header_end.saturating_sub(8)) & !3;
            let v = EXTREMES[rng.below(EXTREMES.len())];
            if rng.below(2) == 0 {
                out[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
            } else {
                out[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            format!("header word at {at} set to {v:#x}")
        }
        3 => {
            let at = rng.below(out.len());
            out.truncate(at);
            format!("cut at byte {at} of {}", bytes.len())
        }
        _ => {
            let n = 1 + rng.below(64);
            for _ in 0..n {
                let at = header_end + rng.below(out.len() - header_end);
                out[at] = rng.next() as u8;
            }
            format!("{n} data bytes overwritten")
        }
    };
    (out, what)
}

fn header_end(path: &Path) -> usize {
    evolve_gguf::read_path(path).unwrap().data_offset as usize
}

/// A rank-2 LoRA on attn_q of every layer of the tiny model.
fn write_adapter(path: &Path) {
    let cfg = TinyLlamaConfig::default();
    let (n, r) = (cfg.n_embd as u64, 2u64);
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .add_metadata("general.type", Value::String("adapter".into()))
        .add_metadata("adapter.type", Value::String("lora".into()))
        .add_metadata("adapter.lora.alpha", Value::F32(4.0));
    for i in 0..cfg.n_layer {
        for (suffix, dims) in [("lora_a", vec![n, r]), ("lora_b", vec![r, n])] {
            let len = (dims[0] * dims[1]) as usize;
            w.add_tensor(
                format!("blk.{i}.attn_q.weight.{suffix}"),
                dims,
                TensorData::F32(vec![0.01; len]),
            )
            .unwrap();
        }
    }
    w.write_to_path(path).unwrap();
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs `evolve args…`; `Err` describes how it broke the rules.
fn run_clean(data: &Path, args: &[&str]) -> Result<bool, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(args)
        .env("EVOLVE_DATA_DIR", data)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Some(code) = out.status.code() else {
        return Err(format!("killed by {:?}\n{stderr}", out.status));
    };
    if stderr.contains("panicked") || code == 101 {
        return Err(format!("panicked\n{stderr}"));
    }
    if code != 0 {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        if errors.len() != 1 || errors[0].len() < 10 {
            return Err(format!(
                "exit {code} without one clear error line\n{stderr}"
            ));
        }
    }
    Ok(code == 0)
}

#[test]
fn mutated_models_and_adapters_fail_cleanly_in_every_entry_point() {
    let cases: usize = std::env::var("EVOLVE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let model = dir.path().join("tiny.gguf");
    write_tiny_llama(&model, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let adapter = dir.path().join("lora.gguf");
    write_adapter(&adapter);
    let model_s = model.to_str().unwrap().to_string();
    let chat = |m: &str, a: Option<&str>| {
        let mut args = vec![
            "chat",
            "--model",
            m,
            "--max-tokens",
            "2",
            "--temperature",
            "0",
        ];
        args.extend(["--threads", "1"]);
        if let Some(a) = a {
            args.extend(["--adapter", a]);
        }
        args.push("hi");
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // The unmutated files work: a broken setup must not pass as "every case failed cleanly".
    assert_eq!(
        run_clean(
            &data,
            &as_refs(&chat(&model_s, Some(adapter.to_str().unwrap())))
        ),
        Ok(true)
    );

    let sources = [
        (std::fs::read(&model).unwrap(), header_end(&model), false),
        (std::fs::read(&adapter).unwrap(), header_end(&adapter), true),
    ];
    let (mut failures, mut loaded) = (Vec::new(), 0);
    for case in 0..cases {
        let mut rng = Rng(case as u64);
        let (bytes, end, is_adapter) = &sources[case % 2];
        let (mutated, what) = mutate(bytes, *end, &mut rng);
        let path = dir.path().join(format!("case-{case}.gguf"));
        std::fs::write(&path, &mutated).unwrap();
        let p = path.to_str().unwrap();
        let runs = if *is_adapter {
            vec![chat(&model_s, Some(p))]
        } else {
            vec![
                ["models", "add", p].map(String::from).to_vec(),
                chat(p, None),
            ]
        };
        for args in runs {
            match run_clean(&data, &as_refs(&args)) {
                Ok(ok) => loaded += ok as usize,
                Err(how) => {
                    if let Ok(keep) = std::env::var("EVOLVE_FUZZ_KEEP") {
                        std::fs::copy(&path, Path::new(&keep).join(format!("case-{case}.gguf")))
                            .unwrap();
                    }
                    failures.push(format!("case {case} ({what}), evolve {args:?}: {how}"))
                }
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    eprintln!(
        "{cases} mutated files, {loaded} runs still succeeded, {} broke the rules",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
