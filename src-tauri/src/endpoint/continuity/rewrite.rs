//! Dropping input items whose ciphertext the chosen account cannot read. An item goes whole:
//! a reasoning item without its `encrypted_content` (an id-less shell) is not something the
//! backend is known to accept, and a compaction item without it is nothing at all.

use super::scan::{digest, Digest};
use serde_json::Value;

/// One dropped item: its ciphertext's digest and its `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub digest: Digest,
    pub kind: String,
}

/// Every `(digest, type)` of the `input` items that carry ciphertext (a parse, for bodies the
/// byte scan could not read).
pub fn carried_parsed(body: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get("input")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("encrypted_content")?.as_str())
                .map(|ct| digest(ct.as_bytes()))
                .collect()
        })
        .unwrap_or_default()
}

/// `body` without the `input` items whose ciphertext `keep` refuses; `None` when nothing was
/// dropped (or the body is not a JSON object with an `input` array): send the bytes as they are.
pub fn drop_items(body: &[u8], keep: impl Fn(&Digest) -> bool) -> Option<(Vec<u8>, Vec<Dropped>)> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let items = v.get_mut("input")?.as_array_mut()?;
    let mut dropped = Vec::new();
    items.retain(|item| {
        let Some(ct) = item.get("encrypted_content").and_then(Value::as_str) else {
            return true;
        };
        let d = digest(ct.as_bytes());
        if keep(&d) {
            return true;
        }
        dropped.push(Dropped {
            digest: d,
            kind: item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("item")
                .to_string(),
        });
        false
    });
    if dropped.is_empty() {
        return None;
    }
    serde_json::to_vec(&v).ok().map(|b| (b, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_whole_items_and_keeps_the_rest_in_order() {
        let body = br#"{"model":"m","input":[
            {"type":"message","role":"user","content":[{"type":"input_text","text":"one"}]},
            {"type":"reasoning","summary":[],"encrypted_content":"mine"},
            {"type":"reasoning","summary":[],"encrypted_content":"theirs"},
            {"type":"compaction","encrypted_content":"theirs-too"},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"two"}]}],"stream":true}"#;
        let mine = digest(b"mine");
        let (out, dropped) = drop_items(body, |d| *d == mine).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let input = v["input"].as_array().unwrap();
        assert_eq!(input.len(), 3);
        assert_eq!(input[1]["encrypted_content"], "mine");
        assert_eq!(input[2]["content"][0]["text"], "two");
        assert_eq!(v["stream"], true);
        assert_eq!(
            dropped.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(),
            vec!["reasoning", "compaction"]
        );
        assert!(drop_items(body, |_| true).is_none());
        assert_eq!(carried_parsed(body).len(), 3);
    }
}
