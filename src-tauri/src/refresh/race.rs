//! What a refused refresh means: the race verdict as a pure function (the token endpoint's
//! refusal class, the refresh token we sent, the row as re-read after the refusal → adopt the
//! sibling's token, needs sign-in and why, not now), and the manager's two outcomes that act on
//! it: adopting a sibling's rotation and marking an account terminal (generation-guarded).

use super::manager::{blocking, AccessToken, Inner, Snapshot};
use super::verify::{self, Verdict as Probe};
use super::RefreshError;
use crate::account::{now_ms, Account, FailureReason, Status};
use std::sync::Arc;

/// The token endpoint's refusal, in `oauth::classify`'s classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `invalid_grant` / `refresh_token_reused`: the token we sent is not current any more.
    Race,
    /// The credential is dead (`refresh_token_expired`, `invalid_client`, a JSON 401, …).
    Dead,
    /// Network, timeout, 5xx, 429, a body that is not JSON, an unknown 4xx. `ambiguous`: the
    /// POST may have reached the issuer without its answer reaching us (it may have rotated).
    Transient { ambiguous: bool },
}

/// What we sent: the generation we had read and its refresh token's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sent {
    pub generation: i64,
    pub refresh_fp: String,
}

/// The account's row as re-read after the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum After {
    /// Not re-read (only a race is judged on what is stored now).
    NotRead,
    /// The account (or its secrets) was removed meanwhile.
    Gone,
    Row {
        generation: i64,
        refresh_fp: String,
        terminal: bool,
    },
}

impl After {
    pub(super) fn of(s: &Snapshot) -> After {
        After::Row {
            generation: s.account.generation,
            refresh_fp: s.refresh_fp.clone(),
            terminal: s.account.status == Status::Terminal,
        }
    }
}

/// An intent row already at the generation we sent: an earlier refresh of that same token
/// never finished (its process died, or its answer was lost on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unfinished {
    No,
    /// The process that sent it is gone: the rotation was lost in a crash.
    ByDeadProcess,
    /// It still runs (it may be this one): the answer was lost in transit.
    ByLiveProcess,
}

/// Why an account needs sign-in after a refused refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The issuer said the credential is dead.
    Upstream,
    /// A reuse answer for a token an earlier, crashed refresh had already spent.
    LostInCrash,
    /// A reuse answer for a token an earlier refresh spent whose answer never arrived.
    LostInTransit,
    /// A reuse answer and no Codex Vault process rotated it: another app redeemed it.
    RedeemedElsewhere,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Re-read the row and ask again: a race is judged on what is stored now.
    Reread,
    /// A sibling rotated first (new generation, new refresh token): adopt its token.
    AdoptSibling,
    /// The grant moved on without a new refresh token we could adopt (a re-import of the same
    /// one, or a second recovery in one call): not ours to judge, answer with what is stored.
    Superseded { terminal: bool },
    /// The account was removed meanwhile.
    Gone,
    /// Needs sign-in (marked only if the row is still at the generation we sent).
    Terminal(Cause),
    /// Not now: back off. `keep_intent` when the issuer may have rotated (then the flight
    /// rechecks once under its lease).
    Transient { keep_intent: bool },
}

/// The race verdict. `may_recover`: this attempt may still adopt a sibling's token (at most
/// one recovery per call: an adopted token refreshed again is never adopted twice).
pub(super) fn verdict(
    refusal: Refusal,
    sent: &Sent,
    after: &After,
    may_recover: bool,
    unfinished: Unfinished,
) -> Verdict {
    match refusal {
        Refusal::Dead => return Verdict::Terminal(Cause::Upstream),
        Refusal::Transient { ambiguous } => {
            return Verdict::Transient {
                keep_intent: ambiguous,
            }
        }
        Refusal::Race => {}
    }
    let (generation, refresh_fp, terminal) = match after {
        After::NotRead => return Verdict::Reread,
        After::Gone => return Verdict::Gone,
        After::Row {
            generation,
            refresh_fp,
            terminal,
        } => (*generation, refresh_fp, *terminal),
    };
    if generation != sent.generation {
        let sibling_rotated = *refresh_fp != sent.refresh_fp;
        return if sibling_rotated && may_recover {
            Verdict::AdoptSibling
        } else {
            // Never mark a newer generation terminal from a stale attempt.
            Verdict::Superseded { terminal }
        };
    }
    Verdict::Terminal(match unfinished {
        Unfinished::ByDeadProcess => Cause::LostInCrash,
        Unfinished::ByLiveProcess => Cause::LostInTransit,
        Unfinished::No => Cause::RedeemedElsewhere,
    })
}

impl Inner {
    pub(super) fn terminal_error(account: &Account) -> RefreshError {
        RefreshError::Terminal {
            account: account.label.clone(),
            reason: account.failure.clone().unwrap_or(FailureReason {
                code: "unknown".into(),
                message: "the account needs sign-in".into(),
                http_status: None,
                at: account.updated_at,
            }),
        }
    }

    /// The answer when the grant moved on: the stored account's own state.
    pub(super) fn as_stored(now: &Snapshot) -> Result<AccessToken, RefreshError> {
        match now.account.status {
            Status::Terminal => Err(Self::terminal_error(&now.account)),
            _ => Ok(now.token()),
        }
    }

    /// A sibling process rotated first: use its token, stay healthy, say so; verify it once,
    /// since our reuse may have revoked the whole family upstream.
    pub(super) async fn adopt_sibling(
        self: &Arc<Self>,
        now: Snapshot,
        code: &str,
    ) -> Result<AccessToken, RefreshError> {
        let store = self.store.clone();
        let id = now.account.id.clone();
        let detail =
            format!("{code}: a sibling had already rotated the refresh token; using its token");
        blocking(move || store.append_event(&id, "race_recovered", Some(&detail))).await?;
        tracing::info!(account = %now.account.id, code, "rotation race recovered");
        crate::activity::metrics::refresh("race_recovered");
        if now.needs_refresh(self.cfg.margin) {
            // The adopted token is itself near expiry: one more refresh, without another recovery.
            return Box::pin(self.attempt(now, false, &mut false)).await;
        }
        if let Some(url) = &self.cfg.usage_url {
            let probe = verify::verify(
                &self.http,
                url,
                &now.access,
                &now.account.chatgpt_account_id,
            )
            .await;
            if let Probe::Rejected { code, http_status } = probe {
                let reason = FailureReason {
                    message: "the sibling's new token was refused too: reusing the old refresh token revoked the whole sign-in upstream. Sign in again.".into(),
                    code,
                    http_status: Some(http_status),
                    at: now_ms(),
                };
                return self.terminal(&now, reason).await;
            }
        }
        Ok(now.token())
    }

    /// Marks the account terminal if it is still at the generation we read.
    pub(super) async fn terminal(
        &self,
        snap: &Snapshot,
        reason: FailureReason,
    ) -> Result<AccessToken, RefreshError> {
        let store = self.store.clone();
        let (id, generation, r) = (
            snap.account.id.clone(),
            snap.account.generation,
            reason.clone(),
        );
        let marked =
            blocking(move || crate::health::Health::new(store).mark_terminal(&id, generation, &r))
                .await?;
        if marked {
            crate::activity::metrics::refresh("terminal");
            tracing::warn!(account = %snap.account.id, code = %reason.code, "account needs sign-in");
            return Err(RefreshError::Terminal {
                account: snap.account.label.clone(),
                reason,
            });
        }
        // The generation moved on meanwhile: that newer grant is not ours to judge.
        let now = self.read(&snap.account.id).await?;
        Self::as_stored(&now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT_GEN: i64 = 7;

    fn sent() -> Sent {
        Sent {
            generation: SENT_GEN,
            refresh_fp: "fp-sent".into(),
        }
    }

    fn row(generation: i64, fp: &str, terminal: bool) -> After {
        After::Row {
            generation,
            refresh_fp: fp.into(),
            terminal,
        }
    }

    fn check_race(rows: Vec<(After, bool, Unfinished, Verdict)>) {
        for (after, may_recover, unfinished, want) in rows {
            assert_eq!(
                verdict(Refusal::Race, &sent(), &after, may_recover, unfinished),
                want,
                "{after:?} / may_recover {may_recover} / {unfinished:?}"
            );
        }
    }

    /// A race, every row: (row as re-read, may recover, unfinished intent) → verdict.
    #[test]
    fn the_race_verdict_table() {
        use Cause::*;
        use Unfinished::*;
        use Verdict::*;
        let moved_new_token = row(SENT_GEN + 1, "fp-sibling", false);
        let moved_new_token_terminal = row(SENT_GEN + 1, "fp-sibling", true);
        let moved_same_token = row(SENT_GEN + 1, "fp-sent", false);
        let moved_terminal = row(SENT_GEN + 1, "fp-sent", true);
        let unchanged = row(SENT_GEN, "fp-sent", false);
        let stored = Superseded { terminal: false };
        let stored_terminal = Superseded { terminal: true };
        check_race(vec![
            // A race is judged on the row as stored now: read it first.
            (After::NotRead, true, No, Reread),
            (After::NotRead, false, ByDeadProcess, Reread),
            // The account was removed meanwhile.
            (After::Gone, true, No, Gone),
            (After::Gone, false, ByLiveProcess, Gone),
            // A sibling rotated first (new generation and a new refresh token): adopt it…
            (moved_new_token.clone(), true, No, AdoptSibling),
            (moved_new_token.clone(), true, ByDeadProcess, AdoptSibling),
            // …but only once per call: a second race answers with what is stored.
            (moved_new_token, false, No, stored),
            (moved_new_token_terminal, false, No, stored_terminal),
            // The grant moved on with the same refresh token (a re-import): not ours to judge.
            (moved_same_token.clone(), true, No, stored),
            (moved_same_token, true, ByDeadProcess, stored),
            (moved_terminal, true, No, stored_terminal),
            // Nothing moved: the token we sent is dead, and the intent says who spent it.
            (unchanged.clone(), true, No, Terminal(RedeemedElsewhere)),
            (
                unchanged.clone(),
                true,
                ByDeadProcess,
                Terminal(LostInCrash),
            ),
            (unchanged, false, ByLiveProcess, Terminal(LostInTransit)),
            // A row still at our generation with another fingerprint is still our generation.
            (
                row(SENT_GEN, "fp-other", false),
                true,
                No,
                Terminal(RedeemedElsewhere),
            ),
        ]);
    }

    /// A dead credential or a transient failure is judged without the stored row.
    #[test]
    fn dead_and_transient_refusals_do_not_depend_on_the_stored_row() {
        use Cause::*;
        use Unfinished::*;
        use Verdict::*;
        let unchanged = row(SENT_GEN, "fp-sent", false);
        let table: Vec<(Refusal, After, bool, Unfinished, Verdict)> = vec![
            // A dead credential is terminal whatever is stored (the mark is generation-guarded).
            (Refusal::Dead, After::NotRead, true, No, Terminal(Upstream)),
            (
                Refusal::Dead,
                unchanged.clone(),
                true,
                ByDeadProcess,
                Terminal(Upstream),
            ),
            (Refusal::Dead, After::Gone, false, No, Terminal(Upstream)),
            // Not now; an ambiguous failure keeps the intent (the issuer may have rotated).
            (
                Refusal::Transient { ambiguous: false },
                After::NotRead,
                true,
                No,
                Transient { keep_intent: false },
            ),
            (
                Refusal::Transient { ambiguous: true },
                After::NotRead,
                true,
                ByLiveProcess,
                Transient { keep_intent: true },
            ),
            (
                Refusal::Transient { ambiguous: true },
                unchanged,
                false,
                No,
                Transient { keep_intent: true },
            ),
        ];
        for (refusal, after, may_recover, unfinished, want) in table {
            assert_eq!(
                verdict(refusal, &sent(), &after, may_recover, unfinished),
                want,
                "{refusal:?} / {after:?} / may_recover {may_recover} / {unfinished:?}"
            );
        }
    }
    #[test]
    fn a_race_is_asked_to_reread_only_before_the_row_is_read() {
        let afters = [
            After::Gone,
            row(SENT_GEN, "fp-sent", false),
            row(SENT_GEN + 1, "fp-sibling", true),
        ];
        for after in afters {
            for may_recover in [true, false] {
                for unfinished in [
                    Unfinished::No,
                    Unfinished::ByDeadProcess,
                    Unfinished::ByLiveProcess,
                ] {
                    let v = verdict(Refusal::Race, &sent(), &after, may_recover, unfinished);
                    assert_ne!(v, Verdict::Reread, "{after:?}");
                }
            }
        }
    }
}
