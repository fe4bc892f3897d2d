//! Building the request that goes to the Codex backend: the upstream's base parsed once, the
//! URI of each request from it (the lean hyper client's, `http::lean`; reqwest where a proxy or
//! an unusual URL needs it), and the headers we send — the client's, filtered, with the
//! account's credentials.

use super::proxy::{Upstream, DROP_REQUEST};
use super::Shared;
use crate::refresh::AccessToken;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The upstream's scheme, authority and base path, parsed once, for the lean client's URIs
/// (`http::lean`). `None` (reqwest then sends, as before) when the upstream does not parse, has
/// a query, a fragment or user info in it, or is reached through a proxy from the environment.
pub(super) struct LeanBase {
    client: crate::http::lean::Client,
    scheme: axum::http::uri::Scheme,
    authority: axum::http::uri::Authority,
    path: String,
}

impl LeanBase {
    pub(super) fn new(url: Option<&reqwest::Url>) -> Option<LeanBase> {
        let url = url?;
        let plain = url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none()
            && matches!(url.scheme(), "http" | "https");
        if !plain {
            return None;
        }
        let uri: axum::http::Uri = url.as_str().parse().ok()?;
        if !crate::http::lean::direct(&uri) {
            return None;
        }
        let parts = uri.into_parts();
        Some(LeanBase {
            client: crate::http::lean::client(),
            scheme: parts.scheme?,
            authority: parts.authority?,
            path: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// The base with `path` (and its query) appended, when that is the URI parsing
    /// `base + path` as a URL gives: only bytes a URL parse leaves as they are, no dot segment.
    pub(super) fn uri(&self, path: &str) -> Option<axum::http::Uri> {
        let route = path.split('?').next().unwrap_or(path);
        if !path.starts_with('/') || route.contains("/.") || !path.bytes().all(url_verbatim) {
            return None;
        }
        axum::http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path}", self.path))
            .build()
            .ok()
    }
}

/// A byte the URL parser copies as it is into a path or a query (outside its percent-encode
/// sets, and not a `\\` it would turn into `/`).
fn url_verbatim(b: u8) -> bool {
    b.is_ascii_graphic() && !b"\"#<>`{}'\\".contains(&b)
}

/// One upstream request, ready to go: built for the lean client when the upstream allows it,
/// else for reqwest.
#[allow(
    clippy::large_enum_variant,
    reason = "built and sent at once, never stored; boxing the hot variant would cost an allocation a request"
)]
pub(crate) enum UpstreamRequest {
    Lean(
        crate::http::lean::Client,
        axum::http::Request<crate::http::lean::Body>,
    ),
    Reqwest(reqwest::RequestBuilder),
}

/// Why an upstream request got no answer.
pub(crate) enum SendError {
    Lean(hyper_util::client::legacy::Error),
    Reqwest(reqwest::Error),
}

impl SendError {
    /// What went wrong, without the URL (nor any header: never the token).
    pub(crate) fn without_url(self) -> String {
        match self {
            SendError::Lean(e) => crate::http::lean::describe(&e),
            SendError::Reqwest(e) => e.without_url().to_string(),
        }
    }
}

impl UpstreamRequest {
    pub(crate) async fn send(self) -> Result<Upstream, SendError> {
        match self {
            UpstreamRequest::Lean(client, req) => client
                .request(req)
                .await
                .map(Upstream::from_lean)
                .map_err(SendError::Lean),
            UpstreamRequest::Reqwest(r) => r
                .send()
                .await
                .map(Upstream::from)
                .map_err(SendError::Reqwest),
        }
    }
}

/// The client's headers less the ones we drop, with the account's credentials set.
fn upstream_headers(client_headers: &HeaderMap, token: &AccessToken) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(client_headers.len() + 3);
    for (name, value) in client_headers {
        if !DROP_REQUEST.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", token.token.expose())) {
        headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&token.chatgpt_account_id) {
        headers.insert(HeaderName::from_static("chatgpt-account-id"), v);
    }
    if token.fedramp {
        headers.insert(
            HeaderName::from_static("x-openai-fedramp"),
            HeaderValue::from_static("true"),
        );
    }
    headers
}

pub(super) fn upstream_request(
    shared: &Shared,
    method: &Method,
    path: &str,
    client_headers: &HeaderMap,
    token: &AccessToken,
    body: &Bytes,
) -> UpstreamRequest {
    let mut headers = upstream_headers(client_headers, token);
    if let Some((lean, uri)) = shared.lean.as_ref().and_then(|l| Some((l, l.uri(path)?))) {
        // What reqwest adds when the client sent none.
        headers
            .entry(axum::http::header::ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        let mut req = axum::http::Request::new(crate::http::lean::Body::new(body.clone()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        return UpstreamRequest::Lean(lean.client.clone(), req);
    }
    let url = match upstream_url(shared.upstream_url.as_ref(), path) {
        Some(u) => u,
        None => match reqwest::Url::parse(&format!("{}{}", shared.upstream, path)) {
            Ok(u) => u,
            // Unparseable: reqwest reports it when the request is sent, as it always did.
            Err(_) => {
                return UpstreamRequest::Reqwest(
                    shared
                        .http
                        .request(method.clone(), format!("{}{}", shared.upstream, path)),
                )
            }
        },
    };
    UpstreamRequest::Reqwest(
        shared
            .http
            .request(method.clone(), url)
            .headers(headers)
            .body(body.clone()),
    )
}

/// `base` (the upstream, parsed once) with `path` (and its query, if any) appended: the same URL
/// as parsing `base + path`, without parsing the host again on every request.
pub(super) fn upstream_url(base: Option<&reqwest::Url>, path: &str) -> Option<reqwest::Url> {
    let base = base?;
    if base.query().is_some() || base.fragment().is_some() || path.contains('#') {
        return None;
    }
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut url = base.clone();
    let joined = format!("{}{p}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(q);
    Some(url)
}
