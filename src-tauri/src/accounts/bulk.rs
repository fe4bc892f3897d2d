//! Bulk import: many files (or folders of them), in any mix of the formats `peer_formats` knows.
//! A plan says what each sign-in would do before anything is written (the preview, `--dry-run`);
//! the import re-plans against the store as it is then and acts one account at a time, each its
//! own transaction, so a bad file or a failed row never stops the others.

use crate::accounts::decision::{decide_import, PreviewAction};
use crate::accounts::import::held_facts;
use crate::accounts::labels::default_label;
use crate::accounts::ownership::{is_visible_codex_auth, Ownership};
use crate::accounts::{validate_label, ExistingAccount, Service};
use crate::error::{AppError, BulkError};
use crate::oauth::auth_json::{self, Credential};
use crate::oauth::peer_formats::{self, PeerFormat};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Said in the preview and the summary: a grant refreshed by two holders logs both out.
pub const OWNERSHIP_NOTE: &str = "The tool these files came from must stop refreshing these \
    accounts once Codex Vault holds them: OpenAI rotates the refresh token on every refresh, so \
    two refreshers of one sign-in log each other out. Remove the accounts there, or stop it.";

/// What one sign-in in the files would do (or did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Not held: a new account.
    New,
    /// Held, and these tokens are newer: they replace ours.
    Update,
    /// Held with tokens at least as new: nothing replaced.
    KeptNewer,
    /// The same account again in these files: only its newest copy counts.
    Duplicate,
    /// Not importable; `reason` says why.
    Invalid,
}

/// One sign-in of the plan. Never any token text.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct BulkItem {
    pub file: String,
    /// Where in the file (`accounts[3]` for an export's row); empty for a one-sign-in file.
    pub locator: String,
    pub format: Option<PeerFormat>,
    pub action: BulkAction,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// The label the account has (held) or gets (new).
    pub label: Option<String>,
    pub existing: Option<ExistingAccount>,
    /// Why a new account's label is not the one its file or email suggests.
    pub label_note: Option<String>,
    /// Invalid: what is wrong; duplicate: which copy counts instead.
    pub reason: Option<String>,
    /// The live Codex CLI's own auth.json: it goes through the broker / detach choice.
    pub codex_cli: bool,
    /// After importing the Codex CLI's own file: what became of it (the env line to add, or
    /// where it was moved).
    pub codex_cli_note: Option<String>,
    /// After an import: what happened (the single import's sentence) or why it failed.
    pub result: Option<String>,
    pub failed: bool,
}

impl BulkItem {
    /// `file` or `file accounts[3]`: how a line names its sign-in.
    pub fn place(&self) -> String {
        if self.locator.is_empty() {
            self.file.clone()
        } else {
            format!("{} {}", self.file, self.locator)
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct BulkPlan {
    pub items: Vec<BulkItem>,
    pub note: String,
}

impl BulkPlan {
    pub fn count(&self, action: BulkAction) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    pub fn any_failed(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.failed || i.action == BulkAction::Invalid)
    }
}

/// The files the paths name: a file as given, a folder's regular files (not its subfolders, not
/// hidden files), sorted, each once.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BulkError> {
    if paths.is_empty() {
        return Err(BulkError::NoPaths);
    }
    let unreadable = |p: &Path, e: std::io::Error| BulkError::Unreadable {
        path: p.display().to_string(),
        detail: e.to_string(),
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| unreadable(p, e))?;
        let mut files = if meta.is_dir() {
            let mut inside = Vec::new();
            for entry in std::fs::read_dir(p).map_err(|e| unreadable(p, e))? {
                let path = entry.map_err(|e| unreadable(p, e))?.path();
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if !hidden && path.is_file() {
                    inside.push(path);
                }
            }
            inside.sort();
            inside
        } else {
            vec![p.clone()]
        };
        files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
        out.extend(files);
    }
    Ok(out)
}

/// A plan's item with what the import needs (kept out of the item: tokens never serialise).
struct Planned {
    item: BulkItem,
    path: PathBuf,
    credential: Option<Credential>,
}

impl Service {
    /// What importing these files would do. Reads them and the store; writes nothing.
    pub fn bulk_preview(&self, files: &[PathBuf]) -> Result<BulkPlan, AppError> {
        Ok(plan_of(self.bulk_plan(files)?))
    }

    /// Imports them: each new or newer sign-in in its own transaction, in file order; `progress`
    /// hears (done, total) after each. `ownership` is the choice for a file that is the live
    /// Codex CLI's auth.json (default: broker, as the single import), whose env line names
    /// `endpoint_port`.
    pub fn bulk_import(
        &self,
        files: &[PathBuf],
        ownership: Option<Ownership>,
        endpoint_port: u16,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<BulkPlan, AppError> {
        let mut planned = self.bulk_plan(files)?;
        let port = endpoint_port;
        let total = planned.len();
        for (n, p) in planned.iter_mut().enumerate() {
            if let Some(cred) = p.credential.as_ref() {
                let owner = p
                    .item
                    .codex_cli
                    .then_some(ownership.unwrap_or(Ownership::Broker));
                let label = match p.item.action {
                    BulkAction::New => p.item.label.clone(),
                    _ => None,
                };
                let mut done =
                    self.import_owned(cred, label.as_deref(), Some(&p.path), owner, port);
                // Another process took the label since the plan: a free default one instead.
                if matches!(
                    done,
                    Err(AppError::Store(crate::store::StoreError::LabelTaken(_)))
                ) {
                    done = self.import_owned(cred, None, Some(&p.path), owner, port);
                }
                match done {
                    Ok(owned) => {
                        p.item.label = Some(owned.outcome.account().label.clone());
                        p.item.result = Some(owned.outcome.sentence());
                        p.item.codex_cli_note = owned.codex_cli.as_ref().map(|r| match r.mode {
                            Ownership::Broker => format!(
                                "the Codex CLI keeps {} and should refresh through Codex Vault: add `{}` to its environment",
                                r.path,
                                r.env.as_deref().unwrap_or_default()
                            ),
                            Ownership::Detach => format!(
                                "moved the Codex CLI's {} aside to {}; nothing was revoked",
                                r.path,
                                r.backup.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                    Err(e) => {
                        p.item.failed = true;
                        p.item.result = Some(format!("{e} [{}]", e.code()));
                    }
                }
            }
            progress(n + 1, total);
        }
        Ok(plan_of(planned))
    }

    fn bulk_plan(&self, files: &[PathBuf]) -> Result<Vec<Planned>, AppError> {
        let mut planned = Vec::new();
        for path in files {
            planned.extend(read_file(path));
        }
        mark_duplicates(&mut planned);
        let mut taken: HashSet<String> = self
            .store()
            .list_accounts()?
            .into_iter()
            .map(|a| a.label)
            .collect();
        for p in &mut planned {
            let Some(cred) = p.credential.as_ref() else {
                continue;
            };
            let (existing, same_grant) = self.held_for(cred)?;
            let held = existing.as_ref().map(|a| held_facts(a, same_grant));
            p.item.action = match decide_import(held, cred.last_refresh, None).preview_action() {
                PreviewAction::Add => BulkAction::New,
                PreviewAction::Update => BulkAction::Update,
                PreviewAction::KeepNewer => BulkAction::KeptNewer,
            };
            if let Some(a) = &existing {
                p.item.label = Some(a.label.clone());
                p.item.existing = Some(ExistingAccount {
                    id: a.id.clone(),
                    label: a.label.clone(),
                });
                continue;
            }
            let wanted = p
                .item
                .label
                .take()
                .unwrap_or_else(|| default_label(&cred.identity.email));
            let label = free_label(&wanted, &taken);
            if label != wanted {
                p.item.label_note = Some(format!(
                    "`{wanted}` is another account's label, so this one is called `{label}`"
                ));
            }
            taken.insert(label.clone());
            p.item.label = Some(label);
        }
        Ok(planned)
    }
}

fn plan_of(planned: Vec<Planned>) -> BulkPlan {
    BulkPlan {
        items: planned.into_iter().map(|p| p.item).collect(),
        note: OWNERSHIP_NOTE.to_string(),
    }
}

fn blank_item(path: &Path) -> BulkItem {
    BulkItem {
        file: path.display().to_string(),
        locator: String::new(),
        format: None,
        action: BulkAction::Invalid,
        email: None,
        plan: None,
        label: None,
        existing: None,
        label_note: None,
        reason: None,
        codex_cli: false,
        codex_cli_note: None,
        result: None,
        failed: false,
    }
}

/// Every sign-in one file holds, each valid or with its reason; a file that cannot be read or
/// is no known format is one invalid item naming the file.
fn read_file(path: &Path) -> Vec<Planned> {
    let invalid = |reason: String| Planned {
        item: BulkItem {
            reason: Some(reason),
            ..blank_item(path)
        },
        path: path.to_path_buf(),
        credential: None,
    };
    let entries = auth_json::read_file(path)
        .map_err(peer_formats::PeerFormatError::from)
        .and_then(|b| peer_formats::read(&b));
    let (format, entries) = match entries {
        Ok(found) => found,
        Err(e) => return vec![invalid(format!("{e} [{}]", e.code()))],
    };
    let codex_cli = format == PeerFormat::CodexAuthJson && is_visible_codex_auth(path);
    entries
        .into_iter()
        .map(|e| {
            let mut item = BulkItem {
                locator: e.locator,
                format: Some(format),
                codex_cli,
                ..blank_item(path)
            };
            match e.credential {
                Ok(cred) => {
                    item.email = Some(cred.identity.email.clone());
                    item.plan = cred.identity.plan.clone();
                    // The other tool's name for it, when it is a label we accept.
                    item.label = e.name.filter(|n| validate_label(n).is_ok());
                    item.action = BulkAction::New;
                    Planned {
                        item,
                        path: path.to_path_buf(),
                        credential: Some(cred),
                    }
                }
                Err(err) => {
                    item.reason = Some(format!("{err} [{}]", err.code()));
                    Planned {
                        item,
                        path: path.to_path_buf(),
                        credential: None,
                    }
                }
            }
        })
        .collect()
}

/// The same ChatGPT account more than once in these files: the copy refreshed last counts (the
/// first of equals), the others are duplicates that name it.
fn mark_duplicates(planned: &mut [Planned]) {
    let mut best: HashMap<(String, String), usize> = HashMap::new();
    for (i, p) in planned.iter().enumerate() {
        let Some(c) = &p.credential else { continue };
        let key = (
            c.identity.chatgpt_account_id.clone(),
            c.identity.chatgpt_user_id.clone(),
        );
        match best.get(&key) {
            Some(&j) if newer_or_same(&planned[j], c) => {}
            _ => {
                best.insert(key, i);
            }
        }
    }
    let winners: HashMap<usize, String> = best
        .values()
        .map(|&i| (i, planned[i].item.place()))
        .collect();
    let by_key: HashMap<(String, String), String> = best
        .into_iter()
        .map(|(k, i)| (k, planned[i].item.place()))
        .collect();
    for (i, p) in planned.iter_mut().enumerate() {
        let Some(c) = &p.credential else { continue };
        if winners.contains_key(&i) {
            continue;
        }
        let key = (
            c.identity.chatgpt_account_id.clone(),
            c.identity.chatgpt_user_id.clone(),
        );
        p.item.action = BulkAction::Duplicate;
        p.item.reason = by_key
            .get(&key)
            .map(|w| format!("the same account as {w}, which counts instead"));
        p.credential = None;
    }
}

fn newer_or_same(kept: &Planned, other: &Credential) -> bool {
    let kept = kept.credential.as_ref().and_then(|c| c.last_refresh);
    match (kept, other.last_refresh) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

/// `wanted`, or `wanted-2`, `wanted-3`, … the first no account has.
fn free_label(wanted: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(wanted) {
        return wanted.to_string();
    }
    (2..)
        .map(|n| format!("{wanted}-{n}"))
        .find(|l| !taken.contains(l))
        // `(2..)` is endless and `taken` finite: a free one is always found.
        .expect("a free label")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clashing_label_gets_the_first_free_suffix() {
        let taken: HashSet<String> = ["work", "work-2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(free_label("work", &taken), "work-3");
        assert_eq!(free_label("home", &taken), "home");
    }

    #[test]
    fn folders_give_their_visible_files_once_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.json", "a.json", ".hidden.json"] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let files = collect_files(&[dir.path().to_path_buf(), dir.path().join("a.json")]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["a.json", "b.json"]);
        assert!(matches!(collect_files(&[]), Err(BulkError::NoPaths)));
        let missing = collect_files(&[dir.path().join("nope")]).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
