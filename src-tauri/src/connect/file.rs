//! Reading and replacing a Codex `config.toml` (and our key file) safely: atomic replace beside
//! the real file (a symlinked config, as dotfile managers make, keeps its link), the mode kept
//! or set, a dated 0600 backup, and the hashes `disconnect` compares.

use crate::error::ConnectError;
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file's bytes; `None` when there is no file.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, ConnectError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConnectError::io("read", path, &e)),
    }
}

/// Where the bytes really live: a symlink's target (the link itself is left in place).
fn real_path(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).unwrap_or(path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// The permission bits of the file (`None`: absent, or not Unix).
pub fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn open_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Replaces `path`'s content with `bytes` atomically (a temporary file beside the real file,
/// fsynced, renamed over it, the directory fsynced). `mode`: the new file's permissions (default:
/// the old file's, else 0600). A failure before the rename leaves the old file as it was.
pub fn replace(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), ConnectError> {
    let real = real_path(path);
    let mode = mode.or_else(|| self::mode(&real)).unwrap_or(0o600);
    let dir = real.parent().unwrap_or(Path::new("."));
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = dir.join(format!(".{name}.codex-vault-{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = open_new(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // The umask may have narrowed what `open_new` asked for; the mode asked is the mode.
        set_mode(&tmp, mode)?;
        fs::rename(&tmp, &real)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ConnectError::io("write", path, &e));
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes a file we created; an absent one is fine.
pub fn remove(path: &Path) -> Result<(), ConnectError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConnectError::io("remove", path, &e)),
    }
}

/// A dated 0600 copy of `bytes` beside `path` (`config.toml.codex-vault-backup-<UTC time>`),
/// never overwriting one that exists.
pub fn backup(path: &Path, bytes: &[u8]) -> Result<PathBuf, ConnectError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let candidate = path.with_file_name(format!("{name}.codex-vault-backup-{stamp}{suffix}"));
        match open_new(&candidate, 0o600) {
            Ok(mut f) => {
                let done = f.write_all(bytes).and_then(|()| f.sync_all());
                if let Err(e) = done {
                    let _ = fs::remove_file(&candidate);
                    return Err(ConnectError::io("back up", path, &e));
                }
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ConnectError::io("back up", path, &e)),
        }
    }
    Err(ConnectError::Io {
        action: "back up",
        path: path.display().to_string(),
        detail: "too many backups with this time stamp".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_the_mode_follows_a_symlink_and_backups_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-config.toml");
        fs::write(&real, "a = 1\n").unwrap();
        set_mode(&real, 0o644).unwrap();
        let link = dir.path().join("config.toml");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&real, &link).unwrap();
        #[cfg(not(unix))]
        fs::copy(&real, &link).unwrap();
        replace(&link, b"a = 2\n", None).unwrap();
        assert_eq!(fs::read(&link).unwrap(), b"a = 2\n");
        #[cfg(unix)]
        {
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(fs::read(&real).unwrap(), b"a = 2\n");
            assert_eq!(mode(&real), Some(0o644));
            replace(&link, b"a = 3\n", Some(0o600)).unwrap();
            assert_eq!(mode(&real), Some(0o600));
        }
        let b1 = backup(&link, b"orig").unwrap();
        let b2 = backup(&link, b"orig").unwrap();
        assert_ne!(b1, b2, "a backup is never overwritten");
        assert_eq!(fs::read(&b1).unwrap(), b"orig");
        #[cfg(unix)]
        assert_eq!(mode(&b1), Some(0o600));
    }

    #[test]
    fn a_failed_replace_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let missing_dir = dir.path().join("nope").join("config.toml");
        let e = replace(&missing_dir, b"x", None).unwrap_err();
        assert!(
            matches!(
                e,
                ConnectError::Io {
                    action: "write",
                    ..
                }
            ),
            "{e}"
        );
    }
}
