//! Sealing a backup with a passphrase: the age file format (age-encryption.org/v1) with its
//! scrypt recipient, whose work factor age picks to take about a second on this machine and
//! records in the file. Nothing here is a KDF or a cipher of ours.

use super::{BackupDoc, FORMAT, VERSION};
use crate::error::BackupError;
use crate::secret::Secret;
use age::secrecy::SecretString;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// Every age file starts with this line; anything else is not a backup of ours.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// Far above any real store (a thousand accounts with long histories is a few MiB), low enough
/// that a wrong file picked by mistake is refused instead of read into memory.
const MAX_BACKUP_BYTES: u64 = 256 * 1024 * 1024;
/// A passphrase shorter than this is refused when a backup is written.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Whether `passphrase` may seal a new backup.
pub fn check_new_passphrase(passphrase: &Secret) -> Result<(), BackupError> {
    if passphrase.expose().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::Passphrase(format!(
            "the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters; nothing was written"
        )));
    }
    Ok(())
}

fn age_secret(passphrase: &Secret) -> SecretString {
    SecretString::from(passphrase.expose().to_string())
}

/// Seals `doc` with `passphrase` and writes it to `path`, 0600: under a temporary name in the
/// same directory, synced, then renamed over `path`, so `path` is always a whole backup (an
/// older one or the new one), never a torn file.
pub fn write(path: &Path, doc: &BackupDoc, passphrase: &Secret) -> Result<(), BackupError> {
    check_new_passphrase(passphrase)?;
    let io = |detail: String| BackupError::Io {
        action: "write the backup to",
        path: path.display().to_string(),
        detail,
    };
    let plain = Zeroizing::new(serde_json::to_vec(doc).map_err(|e| io(e.to_string()))?);
    let recipient = age::scrypt::Recipient::new(age_secret(passphrase));
    let sealed = age::encrypt(&recipient, &plain).map_err(|e| io(e.to_string()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io("the path names no file".into()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
    let written = crate::fsutil::write_private_new(&tmp, &sealed)
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_dir(&dir));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e.to_string()));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads and opens the backup at `path`. Touches nothing else: a wrong passphrase, a file that
/// is not a backup or one from a newer build is an error before any store is opened.
pub fn read(path: &Path, passphrase: &Secret) -> Result<BackupDoc, BackupError> {
    let shown = path.display().to_string();
    let bytes = read_capped(path).map_err(|detail| BackupError::Io {
        action: "read the backup",
        path: shown.clone(),
        detail,
    })?;
    let not_backup = |why: &str| BackupError::NotABackup {
        path: shown.clone(),
        why: why.to_string(),
    };
    if !bytes.starts_with(AGE_MAGIC) {
        return Err(not_backup("it is not an age-encrypted file"));
    }
    let identity = age::scrypt::Identity::new(age_secret(passphrase));
    let plain = Zeroizing::new(age::decrypt(&identity, &bytes).map_err(|e| match e {
        // The scrypt stanza did not open with this passphrase.
        age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed
        | age::DecryptError::NoMatchingKeys => BackupError::WrongPassphrase {
            path: shown.clone(),
        },
        age::DecryptError::ExcessiveWork { required, target } => not_backup(&format!(
            "it asks for scrypt work 2^{required}, far beyond the 2^{target} this machine does in a few seconds"
        )),
        other => not_backup(&format!("it does not open: {other}")),
    })?);
    parse(&plain, &shown)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err("it is a directory".into());
    }
    let mut buf = Vec::new();
    f.take(MAX_BACKUP_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_BACKUP_BYTES {
        return Err(format!(
            "it is larger than {} MiB",
            MAX_BACKUP_BYTES / 1024 / 1024
        ));
    }
    Ok(buf)
}

/// The document inside an opened file: ours, and of a version this build reads.
fn parse(plain: &[u8], shown: &str) -> Result<BackupDoc, BackupError> {
    let not_backup = |why: String| BackupError::NotABackup {
        path: shown.to_string(),
        why,
    };
    let head: serde_json::Value = serde_json::from_slice(plain)
        .map_err(|e| not_backup(format!("its contents are not JSON ({e})")))?;
    if head.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(not_backup(format!("it holds no `{FORMAT}` document")));
    }
    let version = head.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > u64::from(VERSION) {
        return Err(BackupError::TooNew {
            path: shown.to_string(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: VERSION,
        });
    }
    // The error names the field, never a value: the values are tokens.
    serde_json::from_value(head).map_err(|e| not_backup(format!("its document is damaged ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> BackupDoc {
        BackupDoc {
            format: FORMAT.into(),
            version: VERSION,
            created_at: "2026-12-02T00:00:00Z".into(),
            app_version: "test".into(),
            store_id: "s".into(),
            accounts: Vec::new(),
            settings: [("endpoint.port".to_string(), "9000".to_string())].into(),
        }
    }

    #[test]
    fn a_sealed_backup_opens_only_with_its_passphrase_and_hides_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.backup");
        let pass = Secret::new("correct horse battery");
        write(&path, &doc(), &pass).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(AGE_MAGIC));
        assert!(!bytes.windows(13).any(|w| w == b"endpoint.port"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            read(&path, &pass).unwrap().settings["endpoint.port"],
            "9000"
        );
        let wrong = read(&path, &Secret::new("wrong horse battery")).unwrap_err();
        assert!(
            matches!(wrong, BackupError::WrongPassphrase { .. }),
            "{wrong}"
        );
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn short_passphrases_other_files_and_newer_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let short = write(&path, &doc(), &Secret::new("short")).unwrap_err();
        assert!(matches!(short, BackupError::Passphrase(_)), "{short}");
        assert!(!path.exists());

        std::fs::write(&path, b"{\"tokens\":{}}").unwrap();
        let e = read(&path, &Secret::new("whatever1")).unwrap_err();
        assert!(matches!(e, BackupError::NotABackup { .. }), "{e}");

        let pass = Secret::new("passphrase");
        let mut newer = serde_json::to_value(doc()).unwrap();
        newer["version"] = serde_json::json!(VERSION + 1);
        let sealed = age::encrypt(
            &age::scrypt::Recipient::new(age_secret(&pass)),
            newer.to_string().as_bytes(),
        )
        .unwrap();
        std::fs::write(&path, sealed).unwrap();
        let e = read(&path, &pass).unwrap_err();
        assert!(
            matches!(e, BackupError::TooNew { found, .. } if found == VERSION + 1),
            "{e}"
        );
    }
}
