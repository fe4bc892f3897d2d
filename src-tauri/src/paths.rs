//! Where data lives: `CODEX_VAULT_HOME`, else the platform's data dir + `codex-vault`
//! (`~/.local/share/codex-vault` on Linux). The GUI and the CLI resolve it the same way.

use std::path::PathBuf;

pub const APP_DIR_NAME: &str = "codex-vault";

/// No data directory could be found (turned into `AppError::NoDataDir` at the boundary); its
/// own type so this leaf module depends on nothing of the app's.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no data directory: set CODEX_VAULT_HOME, or HOME so the platform's data directory can be found")]
pub struct NoDataDir;

pub fn data_dir() -> Result<PathBuf, NoDataDir> {
    if let Some(dir) = std::env::var_os("CODEX_VAULT_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::data_dir()
        .map(|d| d.join(APP_DIR_NAME))
        .ok_or(NoDataDir)
}

/// The Codex CLI's home: `$CODEX_HOME`, else `~/.codex`.
pub fn codex_home() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    dirs::home_dir().map(|h| h.join(".codex"))
}
