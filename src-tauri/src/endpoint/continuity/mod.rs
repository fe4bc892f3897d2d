//! Conversations that survive account changes (protocol.md's account-bound content):
//! reasoning and compaction items carry `encrypted_content` only the minting account can read,
//! and the Codex CLI replays them on every turn (0.169 and 0.171 were seen sending the `rs_…` id
//! back, codex-rs's model skips it: the ciphertext itself is the one reliable key). So the
//! endpoint records a digest
//! of each ciphertext as the answer streams past ([`tap`]), drops from a request every item
//! another account minted before it goes out ([`rewrite`]), keeps a compacted conversation on
//! the account holding its summary, and remembers conversation → account. All of it is kept
//! in memory and written to SQLite in batches by one task woken only when something changed
//! (nothing runs while idle), so a restart keeps conversations where they were.

pub mod hold;
pub mod rewrite;
pub mod scan;
pub mod tap;

use crate::account::{now_ms, UnixMs};
use crate::store::{
    AffinityRow, ContinuityBatch, ContinuityBounds, CoreStore, MintedRow, SharedStore,
};
use scan::Digest;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What is kept (memory and SQLite): a conversation idle this long is forgotten, and so is
/// ciphertext this old (upstream's lifetime for it is unknown; a week covers resumed work).
pub const BOUNDS: ContinuityBounds = ContinuityBounds {
    max_age_ms: 7 * 24 * 3600 * 1000,
    max_conversations: 10_000,
    max_minted: 100_000,
};
/// Changes are written this long after the first one of a batch (debounce, not a timer: the
/// flush task sleeps only after being woken by a change).
const FLUSH_DEBOUNCE: Duration = Duration::from_millis(500);
/// "Conversations it served recently" in `/v1/accounts` and the app.
pub const RECENT_WINDOW_MS: i64 = 30 * 60 * 1000;
const NOTES_PER_ACCOUNT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reasoning,
    Compaction,
    Other,
}

impl Kind {
    fn from_type(t: &str) -> Kind {
        match t {
            "reasoning" => Kind::Reasoning,
            "compaction" | "compaction_summary" => Kind::Compaction,
            _ => Kind::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Reasoning => "reasoning",
            Kind::Compaction => "compaction",
            Kind::Other => "other",
        }
    }
}

struct Mint {
    account: Arc<str>,
    kind: Kind,
}

struct Conv {
    account: String,
    at: UnixMs,
}

/// Something a person should know about an account's conversations (shown in `/v1/accounts`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    pub at: String,
    pub kind: &'static str,
    pub message: String,
}

#[derive(Default)]
struct State {
    minted: HashMap<Digest, Mint>,
    minted_order: VecDeque<Digest>,
    convs: HashMap<String, Conv>,
    pending: ContinuityBatch,
    notes: HashMap<String, VecDeque<Note>>,
}

#[derive(Default)]
pub struct Continuity {
    state: Mutex<State>,
    dirty: tokio::sync::Notify,
}

impl Continuity {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account that minted this ciphertext, if we saw it pass.
    pub fn minter(&self, d: &Digest) -> Option<Arc<str>> {
        self.lock().minted.get(d).map(|m| m.account.clone())
    }

    pub fn kind_of(&self, d: &Digest) -> Option<Kind> {
        self.lock().minted.get(d).map(|m| m.kind)
    }

    /// `(minter, kind)` of each digest (`None` for ciphertext we never saw), under one lock.
    pub fn minters(&self, digests: &[Digest]) -> Vec<Option<(Arc<str>, Kind)>> {
        let s = self.lock();
        digests
            .iter()
            .map(|d| s.minted.get(d).map(|m| (m.account.clone(), m.kind)))
            .collect()
    }

    pub fn record_minted(&self, d: Digest, account: &str, kind: &str) {
        let kind = Kind::from_type(kind);
        let mut s = self.lock();
        if s.minted.contains_key(&d) {
            return; // `response.completed` repeats the items `output_item.done` carried
        }
        let account: Arc<str> = account.into();
        s.minted.insert(
            d,
            Mint {
                account: account.clone(),
                kind,
            },
        );
        s.minted_order.push_back(d);
        while s.minted_order.len() > BOUNDS.max_minted {
            if let Some(old) = s.minted_order.pop_front() {
                s.minted.remove(&old);
            }
        }
        s.pending.minted.push(MintedRow {
            digest: d.to_vec(),
            account_id: account.to_string(),
            kind: kind.as_str().to_string(),
            minted_at: now_ms(),
        });
        drop(s);
        self.dirty.notify_one();
    }

    /// `conversation` was just served by `account`; returns the account that served it before,
    /// when that was another.
    pub fn served(&self, conversation: &str, account: &str) -> Option<String> {
        let now = now_ms();
        let mut s = self.lock();
        let previous = match s.convs.get_mut(conversation) {
            Some(c) => {
                let before = (c.account != account).then(|| c.account.clone());
                c.account = account.to_string();
                c.at = now;
                before
            }
            None => {
                s.convs.insert(
                    conversation.to_string(),
                    Conv {
                        account: account.to_string(),
                        at: now,
                    },
                );
                None
            }
        };
        if s.convs.len() > BOUNDS.max_conversations {
            // Forget the oldest tenth at once, so this scan is rare.
            let mut ats: Vec<UnixMs> = s.convs.values().map(|c| c.at).collect();
            ats.sort_unstable();
            let cut = ats[ats.len() / 10];
            s.convs.retain(|_, c| c.at > cut);
        }
        s.pending.affinity.push(AffinityRow {
            conversation: conversation.to_string(),
            account_id: account.to_string(),
            last_at: now,
        });
        drop(s);
        self.dirty.notify_one();
        previous
    }

    /// An account event, written with the next batch; `note` also shows it in `/v1/accounts`.
    pub fn event(&self, account: &str, kind: &'static str, detail: String, note: bool) {
        let mut s = self.lock();
        if note {
            let notes = s.notes.entry(account.to_string()).or_default();
            notes.push_back(Note {
                at: crate::account::ms_to_rfc3339(now_ms()),
                kind,
                message: detail.clone(),
            });
            while notes.len() > NOTES_PER_ACCOUNT {
                notes.pop_front();
            }
        }
        s.pending
            .events
            .push((account.to_string(), kind.to_string(), detail));
        drop(s);
        self.dirty.notify_one();
    }

    /// Conversations each account served within the last [`RECENT_WINDOW_MS`].
    pub fn recent_conversations(&self) -> HashMap<String, u64> {
        let since = now_ms() - RECENT_WINDOW_MS;
        let mut out: HashMap<String, u64> = HashMap::new();
        for c in self.lock().convs.values().filter(|c| c.at >= since) {
            *out.entry(c.account.clone()).or_default() += 1;
        }
        out
    }

    pub fn notes(&self, account: &str) -> Vec<Note> {
        self.lock()
            .notes
            .get(account)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Reads what an earlier run kept; returns the conversation → account pairs, oldest first,
    /// for the selector.
    pub fn load(&self, store: &dyn CoreStore) -> Vec<(String, String)> {
        let (affinity, minted) = match store.load_continuity(BOUNDS, now_ms()) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("cannot read conversation affinity: {e}");
                return Vec::new();
            }
        };
        let mut s = self.lock();
        for m in minted {
            let Ok(d) = <Digest>::try_from(m.digest.as_slice()) else {
                continue;
            };
            if s.minted.contains_key(&d) {
                continue;
            }
            s.minted.insert(
                d,
                Mint {
                    account: m.account_id.as_str().into(),
                    kind: Kind::from_type(&m.kind),
                },
            );
            s.minted_order.push_back(d);
        }
        let mut pairs = Vec::with_capacity(affinity.len());
        for a in affinity {
            pairs.push((a.conversation.clone(), a.account_id.clone()));
            s.convs.insert(
                a.conversation,
                Conv {
                    account: a.account_id,
                    at: a.last_at,
                },
            );
        }
        pairs
    }

    fn take_batch(&self) -> Option<ContinuityBatch> {
        let mut s = self.lock();
        let b = &s.pending;
        if b.affinity.is_empty() && b.minted.is_empty() && b.events.is_empty() {
            return None;
        }
        let mut batch = std::mem::take(&mut s.pending);
        // Several turns of one conversation in a batch: only its last row matters.
        let mut seen = std::collections::HashSet::new();
        batch.affinity.reverse();
        batch
            .affinity
            .retain(|r| seen.insert(r.conversation.clone()));
        batch.affinity.reverse();
        Some(batch)
    }

    /// Writes what is pending now (at shutdown; the flush task does it otherwise).
    pub fn flush_now(&self, store: &dyn CoreStore) {
        if let Some(batch) = self.take_batch() {
            if let Err(e) = store.save_continuity(&batch, BOUNDS, now_ms()) {
                tracing::warn!("cannot save conversation affinity: {e}");
            }
        }
    }

    /// The flush task: asleep until a change wakes it, then one batched write after a short
    /// debounce. An idle endpoint never wakes it.
    pub async fn run_flush(self: Arc<Self>, store: SharedStore) {
        loop {
            self.dirty.notified().await;
            tokio::time::sleep(FLUSH_DEBOUNCE).await;
            let Some(batch) = self.take_batch() else {
                continue;
            };
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = store.save_continuity(&batch, BOUNDS, now_ms()) {
                    tracing::warn!("cannot save conversation affinity: {e}");
                }
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn survives_a_restart_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = Continuity::default();
        c.record_minted(scan::digest(b"ct-b"), "b", "reasoning");
        c.record_minted(scan::digest(b"ct-a"), "a", "compaction");
        assert_eq!(c.served("conv-1", "a"), None);
        assert_eq!(c.served("conv-1", "b").as_deref(), Some("a"));
        c.event("b", "conversation_moved", "moved".into(), false);
        c.flush_now(&store);
        assert!(c.take_batch().is_none(), "nothing pending after a flush");

        let again = Continuity::default();
        let pairs = again.load(&store);
        assert_eq!(pairs, vec![("conv-1".to_string(), "b".to_string())]);
        assert_eq!(again.minter(&scan::digest(b"ct-b")).as_deref(), Some("b"));
        assert_eq!(
            again.kind_of(&scan::digest(b"ct-a")),
            Some(Kind::Compaction)
        );
        assert_eq!(again.recent_conversations().get("b"), Some(&1));
        assert_eq!(store.events("b", 5).unwrap()[0].kind, "conversation_moved");
    }
}
