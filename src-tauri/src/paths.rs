//! Where data lives: `CODEX_VAULT_HOME`, else the platform's data dir + `codex-vault`
//! (`~/.local/share/codex-vault` on Linux). The GUI and the CLI resolve it the same way.

use crate::error::AppError;
use std::path::PathBuf;

pub const APP_DIR_NAME: &str = "codex-vault";

pub fn data_dir() -> Result<PathBuf, AppError> {
    if let Some(dir) = std::env::var_os("CODEX_VAULT_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::data_dir()
        .map(|d| d.join(APP_DIR_NAME))
        .ok_or(AppError::NoDataDir)
}

/// The Codex CLI's home: `$CODEX_HOME`, else `~/.codex`.
pub fn codex_home() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    dirs::home_dir().map(|h| h.join(".codex"))
}
