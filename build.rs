// `evolve serve` embeds the built web UI (include_dir!); rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=ui/dist");
}
