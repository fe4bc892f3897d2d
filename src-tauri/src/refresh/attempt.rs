//! One refresh POST and its consequences: the intent written first (so a crash mid-rotation is
//! told honestly), the rotation committed generation-guarded, a refusal judged by the race
//! verdict (`race.rs`), a failed commit handed to the held-rotation path (`hold.rs`).

use super::holder::holder_is_dead;
use super::manager::{blocking, AccessToken, Inner, Snapshot};
use super::race::{verdict, After, Cause, Refusal, Sent, Unfinished, Verdict};
use super::RefreshError;
use crate::account::{now_ms, FailureReason};
use crate::oauth::client::{RefreshOutcome, TokenResponse};
use crate::oauth::jwt;
use crate::store::{Intent, Rotation};
use crate::vault::Field;
use std::sync::Arc;
use std::time::Duration;

/// What the token endpoint said when it refused (for a transient refusal, `message` is the reason).
struct Said {
    code: String,
    message: String,
    http_status: Option<u16>,
}

impl Inner {
    /// One refresh POST and its consequences. `may_recover`: at most one recovery per call.
    /// `lost_answer` is set when the POST may have reached the issuer without its answer
    /// reaching us (the issuer may have rotated).
    pub(super) async fn attempt(
        self: &Arc<Self>,
        snap: Snapshot,
        may_recover: bool,
        lost_answer: &mut bool,
    ) -> Result<AccessToken, RefreshError> {
        let unfinished = self.write_intent(&snap).await?;
        let (refusal, said) = match self.client.refresh(&snap.refresh).await {
            RefreshOutcome::Rotated(t) => {
                crate::activity::metrics::refresh("rotated");
                self.clear_backoff(&snap.account.id);
                return self.commit(&snap, t).await;
            }
            RefreshOutcome::Transient { reason, ambiguous } => {
                crate::activity::metrics::refresh("transient");
                *lost_answer = ambiguous;
                let said = Said {
                    code: String::new(),
                    message: reason,
                    http_status: None,
                };
                (Refusal::Transient { ambiguous }, said)
            }
            RefreshOutcome::Terminal {
                code,
                message,
                http_status,
            } => {
                crate::activity::metrics::refresh("refused");
                (
                    Refusal::Dead,
                    Said {
                        code,
                        message,
                        http_status,
                    },
                )
            }
            RefreshOutcome::MaybeRace {
                code,
                message,
                http_status,
            } => {
                crate::activity::metrics::refresh("refused");
                (
                    Refusal::Race,
                    Said {
                        code,
                        message,
                        http_status: Some(http_status),
                    },
                )
            }
        };
        self.refused(snap, refusal, said, unfinished.as_ref(), may_recover)
            .await
    }

    /// Writes this attempt's intent (under our lease, when leases are on). Returns an intent
    /// already at this generation: a refresh that never finished (crash or lost answer).
    async fn write_intent(&self, snap: &Snapshot) -> Result<Option<Intent>, RefreshError> {
        let generation = snap.account.generation;
        let store = self.store.clone();
        let (id, holder) = (snap.account.id.clone(), self.holder.clone());
        let lease_ttl = self
            .cfg
            .lease_enabled
            .then_some(self.cfg.lease_ttl.as_millis() as i64);
        let (unfinished, under_lease) = blocking(move || {
            let previous = store.intent(&id)?.filter(|i| i.generation == generation);
            let written = store.write_intent_under_lease(&id, generation, &holder, lease_ttl)?;
            Ok((previous, written))
        })
        .await?;
        if !under_lease {
            // Our lease expired and another process took it: it is that process's refresh now.
            return Err(RefreshError::Transient {
                account: snap.account.label.clone(),
                reason: "another Codex Vault process took over this refresh".into(),
            });
        }
        Ok(unfinished)
    }

    /// Acts on the race verdict for a refused refresh.
    async fn refused(
        self: &Arc<Self>,
        snap: Snapshot,
        refusal: Refusal,
        said: Said,
        unfinished: Option<&Intent>,
        may_recover: bool,
    ) -> Result<AccessToken, RefreshError> {
        let sent = Sent {
            generation: snap.account.generation,
            refresh_fp: snap.refresh_fp.clone(),
        };
        let by = || match unfinished {
            None => Unfinished::No,
            // Lost in a crash only if the process that sent that refresh is gone;
            // a live one (this one, or another that still runs) lost the answer.
            Some(prev) if holder_is_dead(&prev.holder) => Unfinished::ByDeadProcess,
            Some(_) => Unfinished::ByLiveProcess,
        };
        let mut now = None;
        let mut v = verdict(refusal, &sent, &After::NotRead, may_recover, by());
        if v == Verdict::Reread {
            let after = match self.read(&snap.account.id).await {
                Ok(s) => {
                    let after = After::of(&s);
                    now = Some(s);
                    after
                }
                Err(RefreshError::NotFound(_)) => After::Gone,
                Err(e) => return Err(e),
            };
            v = verdict(refusal, &sent, &after, may_recover, by());
        }
        match (v, now) {
            (Verdict::AdoptSibling, Some(now)) => self.adopt_sibling(now, &said.code).await,
            (Verdict::Superseded { .. }, Some(now)) => Self::as_stored(&now),
            (Verdict::Gone, _) => Err(RefreshError::NotFound(snap.account.id.clone())),
            (Verdict::Terminal(cause), _) => {
                let reason = terminal_reason(cause, &snap.account.id, said);
                self.terminal(&snap, reason).await
            }
            (Verdict::Transient { keep_intent }, _) => {
                self.transient(&snap, said.message, keep_intent).await
            }
            // The verdict asks for a re-read only before one, and names a stored row only after.
            (Verdict::Reread | Verdict::AdoptSibling | Verdict::Superseded { .. }, _) => {
                Err(RefreshError::TaskFailed(
                    "the race verdict named a stored row that was not read".into(),
                ))
            }
        }
    }

    /// A transient failure: the account's next backoff step, the intent cleared unless the
    /// issuer may have rotated, the reason stored.
    async fn transient(
        &self,
        snap: &Snapshot,
        reason: String,
        keep_intent: bool,
    ) -> Result<AccessToken, RefreshError> {
        let generation = snap.account.generation;
        self.back_off(&snap.account.id);
        let store = self.store.clone();
        let (id, msg) = (snap.account.id.clone(), reason.clone());
        blocking(move || {
            if !keep_intent {
                store.clear_intent(&id, generation)?;
            }
            crate::health::Health::new(store).note_refresh_problem(&id, generation, &msg)
        })
        .await?;
        Err(RefreshError::Transient {
            account: snap.account.label.clone(),
            reason,
        })
    }

    pub(super) async fn commit(
        self: &Arc<Self>,
        snap: &Snapshot,
        t: TokenResponse,
    ) -> Result<AccessToken, RefreshError> {
        let id = &snap.account.id;
        failpoint_pause_before_commit().await;
        // Absent fields keep their old values (protocol.md: each is optional on refresh).
        let access = t.access_token.unwrap_or_else(|| snap.access.clone());
        let rotation = Rotation {
            access_expires_at: jwt::access_token_exp(access.expose())
                .map(|s| s.saturating_mul(1000))
                .or_else(|| t.expires_in.map(|s| now_ms() + s.saturating_mul(1000))),
            access_issued_at: jwt::access_token_iat(access.expose())
                .map(|s| s.saturating_mul(1000)),
            access_token: self.vault.seal(id, Field::AccessToken, &access),
            id_token: t
                .id_token
                .as_ref()
                .map(|s| self.vault.seal(id, Field::IdToken, s)),
            refresh_token: t
                .refresh_token
                .as_ref()
                .map(|s| (self.vault.seal(id, Field::RefreshToken, s), s.fingerprint())),
        };
        let store = self.store.clone();
        let (id2, generation) = (id.clone(), snap.account.generation);
        let to_commit = rotation.clone();
        let committed = match blocking(move || {
            store.commit_rotation(&id2, generation, &to_commit, "refreshed", None)
        })
        .await
        {
            Ok(c) => c,
            // The issuer has rotated: the new refresh token exists only here now. Never drop it.
            Err(e) => return Ok(self.hold(snap, rotation, access, &e)),
        };
        if committed {
            tracing::info!(account = %id, generation = generation + 1, "refreshed");
            if let Some(o) = self.observer.get() {
                o.rotation_committed(id, generation + 1).await;
            }
            let mut token = snap.token();
            token.token = access;
            token.generation = generation + 1;
            token.expires_at = rotation.access_expires_at;
            return Ok(token);
        }
        // Someone replaced the grant meanwhile (a sign-in or import): theirs is newer; never overwrite it.
        tracing::warn!(account = %id, "a newer grant was stored during this refresh; keeping it");
        let now = self.read(id).await?;
        Ok(now.token())
    }
}

/// The failure reason stored for a terminal verdict.
fn terminal_reason(cause: Cause, account_id: &str, said: Said) -> FailureReason {
    let Said {
        code,
        message,
        http_status,
    } = said;
    let lost = |code: &str, how: &str| {
        tracing::warn!(account = %account_id, code, "rotation lost; counted");
        FailureReason {
            code: code.into(),
            message: format!("{how}. Sign in again."),
            http_status,
            at: now_ms(),
        }
    };
    match cause {
        Cause::Upstream => FailureReason {
            code,
            message,
            http_status,
            at: now_ms(),
        },
        Cause::LostInCrash => lost("rotation_lost_in_crash", "a Codex Vault process stopped (crashed or was killed) after the sign-in server rotated the refresh token and before the new one was saved"),
        Cause::LostInTransit => lost("rotation_lost_in_transit", "the answer of an earlier refresh was lost on the network after the sign-in server had rotated the refresh token"),
        Cause::RedeemedElsewhere => FailureReason {
            message: format!(
                "{message} — no other Codex Vault process rotated it, so another app (for example a Codex CLI holding the same sign-in) redeemed it. Sign in again, or let Codex Vault broker the CLI's refreshes."
            ),
            code,
            http_status,
            at: now_ms(),
        },
    }
}

/// `CODEX_VAULT_FAILPOINT=pause_before_commit:<ms>` (see `crate::failpoint`).
async fn failpoint_pause_before_commit() {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        crate::failpoint::value("pause_before_commit")?
            .parse::<u64>()
            .ok()
            .map(Duration::from_millis)
    });
    if let Some(d) = pause {
        tokio::time::sleep(*d).await;
    }
}
