//! `fake-notifications FILE`: a stand-in desktop notification service for the e2e run. It owns
//! `org.freedesktop.Notifications` on the session bus (the one `DBUS_SESSION_BUS_ADDRESS` names)
//! and appends one JSON line per `Notify` call to FILE (`{"app","summary","body"}`), so a test can
//! assert that the app raised a notification. Prints `ready` once it owns the name; runs until
//! killed.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use zbus::zvariant::OwnedValue;

struct Server {
    file: PathBuf,
    next: u32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(
        clippy::too_many_arguments,
        reason = "the D-Bus method's signature (susssasa{sv}i), fixed by the spec"
    )]
    fn notify(
        &mut self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        self.next += 1;
        let line = serde_json::json!({"app": app_name, "summary": summary, "body": body});
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("fake-notifications: cannot record a notification: {e}");
        }
        self.next
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "fake-notifications".into(),
            "codex-vault-testkit".into(),
            env!("CARGO_PKG_VERSION").into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> zbus::Result<()> {
    let file = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: fake-notifications FILE"),
    );
    let _conn = zbus::connection::Builder::session()?
        .name("org.freedesktop.Notifications")?
        .serve_at("/org/freedesktop/Notifications", Server { file, next: 0 })?
        .build()
        .await?;
    println!("ready");
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
    Ok(())
}
