//! Finding the account-bound ciphertext a request body carries without parsing the body: the
//! bytes are searched for `"encrypted_content"` and each string value after it is digested.
//! A Codex turn is tens of KB; most carry no ciphertext at all and cost one `memmem` pass.

use memchr::memmem;
use sha2::{Digest as _, Sha256};
use std::sync::LazyLock;

/// SHA-256 of a ciphertext, truncated to 16 bytes: enough to tell ciphertexts apart, and never
/// the ciphertext itself (nothing that could be replayed is kept).
pub type Digest = [u8; 16];

pub const KEY: &[u8] = b"\"encrypted_content\"";

/// A searcher for [`KEY`], built once (`memmem::find` builds one per call: per request here,
/// per SSE frame in `tap`).
pub static FIND_KEY: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(KEY));

pub fn digest(ciphertext: &[u8]) -> Digest {
    let full = Sha256::digest(ciphertext);
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// What a body carries.
#[derive(Debug, Default, PartialEq)]
pub struct Carried {
    /// Digests of every `encrypted_content` string value, in body order.
    pub digests: Vec<Digest>,
    /// A value the byte scan could not read as a plain string (an escape inside it): the body
    /// must be parsed to know what it carries.
    pub needs_parse: bool,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Every `"encrypted_content": "<value>"` in `body` (a `null` value is skipped). Ciphertext is
/// base64, so its JSON string has no escapes; one that has any is flagged for a real parse
/// rather than digested wrongly.
pub fn carried(body: &[u8]) -> Carried {
    let mut out = Carried::default();
    for at in FIND_KEY.find_iter(body) {
        let mut i = skip_ws(body, at + KEY.len());
        if body.get(i) != Some(&b':') {
            continue; // the word inside some text, not a key
        }
        i = skip_ws(body, i + 1);
        if body.get(i) != Some(&b'"') {
            continue; // null, or not a string
        }
        let start = i + 1;
        let Some(len) = memchr::memchr2(b'"', b'\\', &body[start..]) else {
            out.needs_parse = true;
            continue;
        };
        if body[start + len] == b'\\' {
            out.needs_parse = true;
            continue;
        }
        out.digests.push(digest(&body[start..start + len]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_ciphertext_and_ignores_the_word_in_text() {
        let body = br#"{"input":[{"type":"message","content":[{"type":"input_text","text":"what is \"encrypted_content\"?"}]},
            {"type":"reasoning","summary":[],"encrypted_content":"gAAAA1"},
            {"type":"compaction","encrypted_content" : "gAAAA2"},
            {"type":"reasoning","encrypted_content":null}]}"#;
        let c = carried(body);
        assert_eq!(c.digests, vec![digest(b"gAAAA1"), digest(b"gAAAA2")]);
        assert!(!c.needs_parse);
        assert!(carried(br#"{"encrypted_content":"a\/b"}"#).needs_parse);
        assert_eq!(carried(b"{}"), Carried::default());
    }
}
