//! Which shared-grant flags no longer hold: the other holder's Codex `auth.json` is gone or
//! signed in to another account, or (for a copy we cannot watch: pasted or piped in) our own
//! rotation has spent the token it held. Deciding reads only; `Health::recheck_shared_grants`
//! clears what is stale, `Service::list` shows it cleared without writing.

use crate::oauth::auth_json;
use crate::store::{CoreStore, StoreError};
use std::collections::HashMap;
use std::path::Path;

/// The ids of accounts whose shared-grant flag is stale. A file that is still this account's,
/// or an unreadable one, keeps the flag: a false alarm costs less than two redeemers.
pub fn stale(store: &dyn CoreStore) -> Result<Vec<String>, StoreError> {
    let rotated: HashMap<String, Option<i64>> = store
        .refresh_fingerprints()?
        .into_iter()
        .map(|r| (r.account_id, r.rotated_at))
        .collect();
    let mut out = Vec::new();
    for a in store.list_accounts()? {
        let Some(place) = a.shared_grant_where.as_deref() else {
            continue;
        };
        let path = Path::new(place);
        if !path.is_absolute() {
            let flagged = store.last_event_at(&a.id, "shared_grant_detected")?;
            let spent = matches!(
                (rotated.get(&a.id).copied().flatten(), flagged),
                (Some(r), Some(f)) if r > f
            );
            if spent {
                out.push(a.id);
            }
            continue;
        }
        let gone = !path.exists();
        let other = auth_json::read_file(path)
            .and_then(|b| auth_json::parse(&b))
            .is_ok_and(|c| {
                c.identity.chatgpt_account_id != a.chatgpt_account_id
                    || c.identity.chatgpt_user_id != a.chatgpt_user_id
            });
        if gone || other {
            out.push(a.id);
        }
    }
    Ok(out)
}
