//! "Paste the callback URL": for a browser on another machine. The authorize URL is opened
//! there; its redirect to `http://localhost:1455/auth/callback?code=…&state=…` fails on that
//! machine, and the user pastes that address back. It is checked by the callback server's own
//! check (`Callback::accept`: the state, exactly) before its code is redeemed.

use super::client::TokenClient;
use super::login::{
    redirect_uri, Callback, LoginError, LoginOptions, Outcome, DEFAULT_CALLBACK_PORTS,
};
use std::collections::HashMap;

/// The query of a pasted callback URL: an absolute URL whose path is `/auth/callback`.
pub(super) fn pasted_query(text: &str) -> Result<HashMap<String, String>, LoginError> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| LoginError::PasteInvalid(format!("not a URL: {e}")))?;
    if url.path() != "/auth/callback" {
        return Err(LoginError::PasteInvalid(format!(
            "its path is `{}`, not `/auth/callback`",
            url.path()
        )));
    }
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    if !q.contains_key("state") {
        return Err(LoginError::PasteInvalid("it has no `state`".into()));
    }
    Ok(q)
}

/// A sign-in whose browser is on another machine: the authorize URL to open there, and the
/// callback URL pasted back. No callback server runs; the redirect URI is still the registered
/// `http://localhost:{port}/auth/callback` (the browser's failed visit there is what is pasted).
pub struct PastedLogin {
    url: String,
    callback: Callback,
}

impl PastedLogin {
    pub fn new(opts: &LoginOptions, client: TokenClient) -> PastedLogin {
        // The first configured port (1455 by default) names the redirect; 0 has no meaning here.
        let port = opts
            .ports
            .iter()
            .copied()
            .find(|p| *p != 0)
            .unwrap_or(DEFAULT_CALLBACK_PORTS[0]);
        // Nobody waits on the receiver: `finish` answers directly.
        let (callback, url, _) = Callback::new(&opts.issuer, redirect_uri(port), client);
        PastedLogin { url, callback }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks the pasted URL as the callback server checks a request, then redeems its code.
    pub async fn finish(self, callback_url: &str) -> Outcome {
        let q = pasted_query(callback_url)?;
        if self.callback.accept(&q)?.is_none() {
            return Err(LoginError::Cancelled("already finished".into()));
        }
        self.callback.answer(&q).await
    }
}
