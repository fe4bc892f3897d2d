fn main() {
    // Only the desktop build embeds the Tauri context (config, icons, frontendDist).
    #[cfg(feature = "desktop")]
    tauri_build::build();
}
