//! Function names the Responses backend accepts are at most 64 characters; Chat Completions
//! clients send longer ones (MCP tools named `server__namespace__tool…`). A long name becomes a
//! prefix plus a hash of the whole name, so two names sharing a prefix stay distinct, and the map
//! kept for the request restores the original in the answer.

use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const MAX_NAME: usize = 64;
/// `_` + 8 hex digits of SHA-256 of the full name.
const HASH_SUFFIX: usize = 9;

/// Original ↔ shortened names for one request.
#[derive(Debug, Default, Clone)]
pub struct NameMap {
    short_to_long: HashMap<String, String>,
}

impl NameMap {
    /// The name to send upstream; remembers how to restore it.
    pub fn shorten(&mut self, name: &str) -> String {
        if name.len() <= MAX_NAME {
            return name.to_string();
        }
        let digest = Sha256::digest(name.as_bytes());
        let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let mut cut = MAX_NAME - HASH_SUFFIX;
        // Names are ASCII per OpenAI's rules, but a char boundary keeps us safe on any input.
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let short = format!("{}_{hash}", &name[..cut]);
        self.short_to_long.insert(short.clone(), name.to_string());
        short
    }

    /// The client's name for what upstream called `name` (unchanged when it was never shortened).
    pub fn restore(&self, name: &str) -> String {
        self.short_to_long
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_pass_unchanged_and_long_ones_round_trip() {
        let long_a = format!("mcp__server__{}", "a".repeat(80));
        let long_b = format!("mcp__server__{}b", "a".repeat(80));
        let exact = "x".repeat(64);
        let mut m = NameMap::default();
        let cases: &[(&str, bool)] = &[
            ("get_weather", false),
            (exact.as_str(), false),
            (long_a.as_str(), true),
            (long_b.as_str(), true),
        ];
        let mut shorts = Vec::new();
        for (name, shortened) in cases {
            let s = m.shorten(name);
            assert!(s.len() <= MAX_NAME, "{s} is too long");
            assert_eq!(s != *name, *shortened, "{name}");
            assert_eq!(m.restore(&s), *name, "round trip of {name}");
            shorts.push(s);
        }
        assert_ne!(
            shorts[2], shorts[3],
            "same prefix, different names, different short names"
        );
        assert_eq!(shorts[2].len(), MAX_NAME);
        assert!(shorts[2].starts_with("mcp__server__aaa"));
        // Deterministic: the same name in history and in `tools` maps to the same short name.
        assert_eq!(NameMap::default().shorten(&long_a), shorts[2]);
        assert_eq!(m.restore("never_seen"), "never_seen");
    }
}
