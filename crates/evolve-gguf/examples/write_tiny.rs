//! Write the tiny Llama model for manual checks with llama.cpp tools:
//! `cargo run -p evolve-gguf --example write_tiny -- tiny.gguf q8_0`

use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tiny.gguf".to_string());
    let weight_type: WeightType = match args.next().unwrap_or_else(|| "f32".into()).parse() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match write_tiny_llama(path.as_ref(), &TinyLlamaConfig::default(), weight_type) {
        Ok(summary) => print!("{}", summary.to_text()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
