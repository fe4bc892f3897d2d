//! The account card's *Redeem reset* (after its confirmation dialog): one core call, the change
//! announced. Apart from `commands.rs` to keep that file under the size limit.

use super::events;
use super::AppState;
use crate::accounts::RedeemOutcome;
use crate::error::ErrorBody;
use tauri::{AppHandle, State};

/// Spends one reset credit of the account through the app's TokenManager. The UI asks first;
/// a second click while one is in flight joins it (nothing more is spent).
#[tauri::command]
pub async fn redeem_reset(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
) -> Result<RedeemOutcome, ErrorBody> {
    let service = state.service()?;
    let tm = state.token_manager()?;
    let result = service.redeem_reset(tm, &id).await;
    events::account_changed(&app, Some(&id));
    result.map_err(|e| e.to_body())
}
