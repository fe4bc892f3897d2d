//! The one test that uses the real registered ports: 1455 busy → 1457. Its own binary, so it runs
//! alone; nothing else in the suite binds these ports.

use codex_vault::oauth::client::{Issuer, TokenClient};
use codex_vault::oauth::login::{LoginFlow, LoginOptions};

#[tokio::test]
async fn real_default_ports_fall_back_from_1455_to_1457() {
    let opts = LoginOptions::from_env().unwrap();
    assert_eq!(
        opts.ports,
        [1455, 1457],
        "the defaults must be exactly the registered ports"
    );
    // Hold 1455 as a running `codex login` would (if something else holds it, it is busy all the same).
    let _holder = std::net::TcpListener::bind("127.0.0.1:1455");
    let flow = LoginFlow::start(
        &opts,
        TokenClient::new(Issuer {
            base: "http://127.0.0.1:9".into(),
        }),
    )
    .await
    .expect("1457 must be free on a test machine");
    assert_eq!(flow.port(), 1457);
    assert!(
        flow.url()
            .contains("redirect_uri=http%3A%2F%2Flocalhost%3A1457%2Fauth%2Fcallback"),
        "{}",
        flow.url()
    );
}
