//! One account as read for a refresh (its row and opened secrets), and what it says: the token
//! to hand out, and whether it is due for a refresh.

use super::manager::{
    blocking, refresh_margin, valid_for, AccessToken, Inner, Snapshot, STALE_WITHOUT_EXP_MS,
};
use super::RefreshError;
use crate::account::now_ms;
use crate::vault::Field;
use std::time::Duration;

impl Snapshot {
    pub(super) fn token(&self) -> AccessToken {
        AccessToken {
            account_id: self.account.id.clone(),
            chatgpt_account_id: self.account.chatgpt_account_id.clone(),
            fedramp: self.account.fedramp,
            token: self.access.clone(),
            expires_at: self.account.access_expires_at,
            generation: self.account.generation,
        }
    }

    pub(super) fn needs_refresh(&self, margin: Duration) -> bool {
        let margin = refresh_margin(
            margin,
            self.account.access_issued_at,
            self.account.access_expires_at,
        );
        match self.account.access_expires_at {
            Some(_) => !valid_for(self.account.access_expires_at, margin),
            None => self
                .account
                .last_refresh_at
                .is_none_or(|t| now_ms() - t > STALE_WITHOUT_EXP_MS),
        }
    }
}

impl Inner {
    pub(super) async fn read(&self, account_id: &str) -> Result<Snapshot, RefreshError> {
        let store = self.store.clone();
        let id = account_id.to_string();
        let (account, secrets) = blocking(move || {
            let a = store.get_account(&id)?;
            let s = store.secrets(&id)?;
            Ok((a, s))
        })
        .await?;
        let (Some(account), Some(s)) = (account, secrets) else {
            return Err(RefreshError::NotFound(account_id.to_string()));
        };
        let open = |field, blob: &[u8]| self.vault.open(account_id, field, blob);
        Ok(Snapshot {
            access: open(Field::AccessToken, &s.access_token)?,
            refresh: open(Field::RefreshToken, &s.refresh_token)?,
            refresh_fp: s.refresh_fingerprint,
            account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Account, Status};
    use crate::refresh::manager::DEFAULT_MARGIN;
    use crate::secret::Secret;

    const MIN: i64 = 60_000;

    #[test]
    fn a_fresh_short_lived_token_is_not_refreshed_on_every_use() {
        let now = now_ms();
        let account = Account {
            id: "a".into(),
            label: "a".into(),
            email: None,
            chatgpt_account_id: "c".into(),
            chatgpt_user_id: "u".into(),
            plan: None,
            fedramp: false,
            status: Status::Healthy,
            failure: None,
            last_error: None,
            access_expires_at: Some(now + 2 * MIN),
            access_issued_at: Some(now),
            last_refresh_at: Some(now),
            rate_limited_until: None,
            generation: 0,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            usage_json: None,
            shared_grant_where: None,
            brokered: false,
            broker_holder_seen_at: None,
            restored_at: None,
        };
        let snap = |a: Account| Snapshot {
            account: a,
            access: Secret::new("x"),
            refresh: Secret::new("y"),
            refresh_fp: String::new(),
        };
        assert!(!snap(account.clone()).needs_refresh(DEFAULT_MARGIN));
        let mut late = account;
        late.access_issued_at = Some(now - 100_000);
        late.access_expires_at = Some(now + 20_000);
        assert!(
            snap(late).needs_refresh(DEFAULT_MARGIN),
            "inside its last quarter: refreshed"
        );
    }
}
