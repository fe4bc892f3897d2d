//! Who may talk to the endpoint: only local clients that know the local key. A non-loopback
//! `Host` is a DNS-rebinding attempt (a web page that resolved its own name to 127.0.0.1); any
//! browser `Origin` is a cross-site request. Both get 403 before anything else happens.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

/// `Host` must name the loopback interface (any port): 127.0.0.1, localhost, [::1].
pub fn host_allowed(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.1 requires Host; a request without one is not from a well-behaved local client.
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, port)) if port.is_empty() || valid_port(port) => inner.to_string(),
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name.to_string(),
            Some(_) => return false,
            None => host,
        }
    };
    matches!(name.as_str(), "127.0.0.1" | "localhost" | "::1")
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':')
        .is_some_and(|n| !n.is_empty() && n.parse::<u16>().is_ok())
}

/// Any `Origin` means a browser made the request on a page's behalf.
pub fn has_browser_origin(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
}

/// `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in constant time.
pub fn key_matches(headers: &HeaderMap, key: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match presented {
        Some(p) => p.trim().as_bytes().ct_eq(key.as_bytes()).into(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn only_loopback_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8417",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "[::1]:8417",
        ] {
            assert!(host_allowed(&with(header::HOST, ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8417",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "[::2]:1",
            "127.0.0.1:abc",
            "0.0.0.0",
            "",
        ] {
            assert!(!host_allowed(&with(header::HOST, bad)), "{bad}");
        }
        assert!(!host_allowed(&HeaderMap::new()));
    }

    #[test]
    fn key_in_either_header() {
        assert!(key_matches(
            &with(header::AUTHORIZATION, "Bearer cvk_x"),
            "cvk_x"
        ));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("cvk_x"));
        assert!(key_matches(&h, "cvk_x"));
        assert!(!key_matches(
            &with(header::AUTHORIZATION, "Bearer cvk_y"),
            "cvk_x"
        ));
        assert!(!key_matches(&with(header::AUTHORIZATION, "cvk_x"), "cvk_x"));
        assert!(!key_matches(&HeaderMap::new(), "cvk_x"));
    }
}
