use super::AppState;
use crate::account::AccountView;
use crate::error::ErrorBody;
use crate::service::StoreInfo;
use tauri::State;

#[tauri::command]
pub fn list_accounts(state: State<'_, AppState>) -> Result<Vec<AccountView>, ErrorBody> {
    state.service()?.list().map_err(|e| e.to_body())
}

#[tauri::command]
pub fn store_info(state: State<'_, AppState>) -> Result<StoreInfo, ErrorBody> {
    Ok(state.service()?.info())
}
