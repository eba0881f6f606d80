fn main() {
    // The window embeds ../ui/dist at compile time; a rebuilt UI must rebuild the app.
    println!("cargo:rerun-if-changed=../ui/dist");
    // Declaring the app's one command makes it a permission (`allow-api`) that the capability
    // must grant, like every other; nothing is allowed by default.
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(&["api"])),
    )
    .expect("tauri-build failed");
}
