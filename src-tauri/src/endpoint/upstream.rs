//! Building the request that goes to the Codex backend: the upstream's base parsed once, the
//! URI of each request from it (the lean hyper client's, `http::lean`; reqwest where a proxy or
//! an unusual URL needs it), and the headers we send — the client's, filtered, with the
//! account's credentials.

use super::proxy::{Upstream, DROP_REQUEST};
use super::Shared;
use crate::refresh::AccessToken;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The upstream's scheme, authority and base path, parsed once, for the lean clients' URIs
/// (`http::inline` for `http://`, `http::lean` for `https://`). `None` (reqwest then sends, as
/// before) when the upstream does not parse, has a query, a fragment or user info in it, or is
/// reached through a proxy from the environment.
pub(super) struct LeanBase {
    client: LeanClient,
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
        let (scheme, authority) = (parts.scheme?, parts.authority?);
        let client = if scheme == axum::http::uri::Scheme::HTTP {
            LeanClient::Inline(crate::http::inline::Pool::new(&authority)?)
        } else {
            LeanClient::Pooled(crate::http::lean::client())
        };
        Some(LeanBase {
            client,
            scheme,
            authority,
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
        let path_and_query = format!("{}{path}", self.path);
        match self.client {
            // Origin form, as an HTTP/1.1 request line carries it (the pool sets `Host`).
            LeanClient::Inline(_) => axum::http::Uri::builder().path_and_query(path_and_query),
            LeanClient::Pooled(_) => axum::http::Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(path_and_query),
        }
        .build()
        .ok()
    }

    /// The URL a request for `path` goes to: the URI itself, or for the inline pool's origin
    /// form, scheme and `Host` before it.
    #[cfg(test)]
    pub(super) fn target(&self, path: &str) -> Option<String> {
        let uri = self.uri(path)?;
        Some(match &self.client {
            LeanClient::Inline(pool) => format!(
                "{}://{}{uri}",
                self.scheme,
                pool.host_header().to_str().ok()?
            ),
            LeanClient::Pooled(_) => uri.to_string(),
        })
    }
}

/// How the lean path reaches its upstream.
#[allow(
    clippy::large_enum_variant,
    reason = "one per endpoint, built once; boxing would add a pointer hop a request"
)]
enum LeanClient {
    /// `http://`: connections driven in the request's own task (`http::inline`).
    Inline(std::sync::Arc<crate::http::inline::Pool>),
    /// `https://`: hyper-util's pooled client (TLS, HTTP/2).
    Pooled(crate::http::lean::Client),
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
    Inline(
        std::sync::Arc<crate::http::inline::Pool>,
        axum::http::Request<crate::http::inline::Body>,
    ),
    Lean(
        crate::http::lean::Client,
        axum::http::Request<crate::http::lean::Body>,
    ),
    Reqwest(reqwest::RequestBuilder),
}

/// Why an upstream request got no answer.
pub(crate) enum SendError {
    Inline(crate::http::inline::Error),
    Lean(hyper_util::client::legacy::Error),
    Reqwest(reqwest::Error),
}

impl SendError {
    /// What went wrong, without the URL (nor any header: never the token).
    pub(crate) fn without_url(self) -> String {
        match self {
            SendError::Inline(e) => e.to_string(),
            SendError::Lean(e) => crate::http::lean::describe(&e),
            SendError::Reqwest(e) => e.without_url().to_string(),
        }
    }
}

impl UpstreamRequest {
    pub(crate) async fn send(self) -> Result<Upstream, SendError> {
        match self {
            UpstreamRequest::Inline(pool, req) => pool
                .request(req)
                .await
                .map(Upstream::streaming)
                .map_err(SendError::Inline),
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
        return match &lean.client {
            LeanClient::Inline(pool) => UpstreamRequest::Inline(pool.clone(), req),
            LeanClient::Pooled(client) => UpstreamRequest::Lean(client.clone(), req),
        };
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
