//! Write-back of a brokered sign-in's rotations into its holder's own Codex auth.json, and each
//! safeguard: unknown keys kept and 0600; a symlink followed (its target replaced, the link kept);
//! a file signed in to something else since left alone; a missing file never created; a
//! hard-linked file left alone; the CLI's own locks honoured; and the observer on a TokenManager.

use crate::common::wait_until_async;

use crate::common::vault::*;
use codex_vault::accounts::ownership::Ownership;
use codex_vault::codex_writeback::{write_back, CodexWriteback, Outcome};
use codex_vault::oauth::auth_json;
use codex_vault::vault::Field;
use codex_vault_testkit::{AccountSpec, FakeOpenAi, IssuedTokens};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Case {
    e: TestVault,
    _dir: tempfile::TempDir,
    /// The path the CLI (and the import) names.
    path: PathBuf,
    /// The file behind it (the same path unless symlinked).
    target: PathBuf,
    id: String,
}

/// The CLI's file, with keys of its own we do not know.
fn cli_file(t: &IssuedTokens) -> Value {
    let mut v: Value = serde_json::from_str(&FakeOpenAi::auth_json(t, chrono::Utc::now())).unwrap();
    v["future_top_level"] = json!({"kept": [1, 2, 3]});
    v["tokens"]["future_token_field"] = json!("kept too");
    v
}

fn write_0600(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Case {
    /// A brokered import of `$dir/codex/auth.json` (a symlink to `$dir/real/auth.json` when
    /// `linked`), then one rotation by the vault.
    async fn new(linked: bool) -> Case {
        let e = TestVault::builder().no_endpoint().start().await;
        let fake = &e.fake;
        let dir = tempfile::tempdir().unwrap();
        let t = fake.add_account(AccountSpec::default());
        let codex = dir.path().join("codex");
        std::fs::create_dir_all(&codex).unwrap();
        let path = codex.join("auth.json");
        let target = if linked {
            let real = dir.path().join("real");
            std::fs::create_dir_all(&real).unwrap();
            std::os::unix::fs::symlink("../real/auth.json", &path).unwrap();
            real.join("auth.json")
        } else {
            path.clone()
        };
        write_0600(&target, &serde_json::to_vec_pretty(&cli_file(&t)).unwrap());
        let cred = auth_json::parse(&std::fs::read(&path).unwrap()).unwrap();
        let owned = e
            .service
            .import_owned(&cred, None, Some(&path), Some(Ownership::Broker), 0)
            .unwrap();
        let id = owned.outcome.account().id.clone();
        let case = Case {
            e,
            _dir: dir,
            path,
            target,
            id,
        };
        case.rotate().await;
        case
    }

    async fn rotate(&self) {
        let tm = self.e.manager(refresh_config(&self.e.fake));
        tm.force_refresh(&self.id, None).await.unwrap();
    }

    fn write_back(&self) -> Vec<(String, Outcome)> {
        write_back(self.e.service.store(), self.e.service.vault(), &self.id).unwrap()
    }

    fn stored(&self) -> (String, String) {
        let s = self.e.service.store().secrets(&self.id).unwrap().unwrap();
        let v = self.e.service.vault();
        (
            v.open(&self.id, Field::RefreshToken, &s.refresh_token)
                .unwrap()
                .expose()
                .to_string(),
            v.open(&self.id, Field::AccessToken, &s.access_token)
                .unwrap()
                .expose()
                .to_string(),
        )
    }

    fn file(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.target).unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_written_back_with_unknown_keys_kept_and_0600() {
    let c = Case::new(false).await;
    let before = c.file();
    let out = c.write_back();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Outcome::Written);
    let after = c.file();
    let (rt, at) = c.stored();
    assert_eq!(after["tokens"]["refresh_token"].as_str(), Some(rt.as_str()));
    assert_eq!(after["tokens"]["access_token"].as_str(), Some(at.as_str()));
    assert_ne!(
        after["tokens"]["refresh_token"],
        before["tokens"]["refresh_token"]
    );
    assert_eq!(after["future_top_level"], json!({"kept": [1, 2, 3]}));
    assert_eq!(after["tokens"]["future_token_field"], "kept too");
    assert_eq!(
        after["tokens"]["account_id"],
        before["tokens"]["account_id"]
    );
    assert_eq!(after["auth_mode"], "chatgpt");
    assert!(after["OPENAI_API_KEY"].is_null());
    let mode = std::fs::metadata(&c.target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The CLI's own parser takes the result, and nothing was left beside it but the CLI's locks.
    auth_json::parse(&std::fs::read(&c.target).unwrap()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(c.path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["auth.json", "auth.json.lock", "auth.lock"]);
    // Again: nothing to do; the account's event says where it wrote.
    assert_eq!(c.write_back()[0].1, Outcome::AlreadyCurrent);
    let events = c.e.service.store().events(&c.id, 20).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "codex_cli_written")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_file_is_followed_and_the_link_kept() {
    let c = Case::new(true).await;
    assert_eq!(c.write_back()[0].1, Outcome::Written);
    let meta = std::fs::symlink_metadata(&c.path).unwrap();
    assert!(meta.file_type().is_symlink(), "the link is still a link");
    assert_eq!(
        std::fs::read_link(&c.path).unwrap(),
        PathBuf::from("../real/auth.json")
    );
    assert_eq!(
        c.file()["tokens"]["refresh_token"].as_str(),
        Some(c.stored().0.as_str())
    );
    // The CLI's locks, where the CLI takes them: `auth.lock` beside the link, `<file>.lock`
    // beside the target.
    assert!(c.path.with_file_name("auth.lock").exists());
    assert!(c.target.with_file_name("auth.json.lock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_signed_in_elsewhere_since_is_left_alone() {
    let c = Case::new(false).await;
    // The user signed the CLI in to another account (or signed in again: a new grant).
    let other = c.e.fake.add_account(AccountSpec::default());
    let text = FakeOpenAi::auth_json(&other, chrono::Utc::now());
    write_0600(&c.target, text.as_bytes());
    let out = c.write_back();
    assert!(matches!(out[0].1, Outcome::LeftAlone(_)), "{out:?}");
    assert_eq!(std::fs::read_to_string(&c.target).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_never_created() {
    let c = Case::new(false).await;
    std::fs::remove_file(&c.target).unwrap();
    assert_eq!(c.write_back()[0].1, Outcome::Absent);
    assert!(!c.target.exists());
    assert!(
        !c.path.with_file_name("auth.lock").exists(),
        "not even a lock file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_linked_file_is_left_alone() {
    let c = Case::new(false).await;
    let twin = c.target.with_file_name("twin.json");
    std::fs::hard_link(&c.target, &twin).unwrap();
    let before = std::fs::read(&c.target).unwrap();
    let out = c.write_back();
    assert!(matches!(out[0].1, Outcome::LeftAlone(_)), "{out:?}");
    assert_eq!(std::fs::read(&c.target).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clis_lock_is_honoured() {
    let c = Case::new(false).await;
    let before = std::fs::read(&c.target).unwrap();
    // The CLI in the middle of its own commit holds `auth.lock` (flock, exclusive).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(c.path.with_file_name("auth.lock"))
        .unwrap();
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this test owns and keeps open.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = c.write_back();
    assert!(matches!(out[0].1, Outcome::LeftAlone(_)), "{out:?}");
    assert_eq!(
        std::fs::read(&c.target).unwrap(),
        before,
        "untouched under the lock"
    );
    drop(lock); // closing the descriptor releases the flock
    assert_eq!(c.write_back()[0].1, Outcome::Written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_writes_every_committed_rotation_back() {
    let c = Case::new(false).await;
    let tm = c.e.manager(refresh_config(&c.e.fake));
    tm.set_rotation_observer(std::sync::Arc::new(CodexWriteback::new(
        c.e.service.store().clone(),
        c.e.service.vault().clone(),
    )));
    tm.force_refresh(&c.id, None).await.unwrap();
    let rt = c.stored().0;
    // The write-back runs beside the refresh (a CLI may hold its lock meanwhile): await it.
    wait_until_async(
        "the write-back of the rotation",
        Duration::from_secs(10),
        || std::future::ready(c.file()["tokens"]["refresh_token"].as_str() == Some(rt.as_str())),
    )
    .await;
}
