//! Shows the core's notices (`crate::notices`: what is worth telling, once per episode, each
//! switchable off in Settings) as desktop notifications (`tauri-plugin-notification`; on Linux a
//! `org.freedesktop.Notifications.Notify` call on the session bus).

use std::sync::Arc;
use tauri::AppHandle;
use tauri_plugin_notification::NotificationExt;

/// Starts the notices for the app's core (in its runtime; woken only by bus events).
pub fn spawn(app: &AppHandle, core: &Arc<crate::runtime::Core>) {
    let app = app.clone();
    crate::notices::spawn(core.service.clone(), core.endpoint.clone(), move |n| {
        tracing::info!(kind = ?n.kind, account = n.account_id.as_deref().unwrap_or("-"), "notification: {}", n.title);
        // A desktop without a notification service loses the notice, nothing else.
        if let Err(e) = app
            .notification()
            .builder()
            .title(&n.title)
            .body(&n.body)
            .show()
        {
            tracing::warn!("notification not shown: {e}");
        }
    });
}
