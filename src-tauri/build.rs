fn main() {
    // The window embeds ../ui/dist at compile time; a rebuilt UI must rebuild the app.
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::build()
}
