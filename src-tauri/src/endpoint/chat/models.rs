//! The backend's model catalog (`{"models":[{"slug",…}]}`, the Codex CLI's shape) → OpenAI's
//! `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`. Pure.

use serde_json::{json, Value};

/// The `client_version` the chat path sends when it lists models for a client that is not the
/// Codex CLI. The backend answers its catalog per Codex CLI release (each model names a
/// `minimal_client_version`), and an OpenAI-style client has no Codex release of its own to
/// send, so the chat path asks as the oldest Codex CLI release Codex Vault supports and is
/// tested against (0.169.0; 0.171.0 is the other, `docs/protocol.md`). A constant rather than
/// something read from the request: a chat request carries no Codex version, and a Codex CLI's
/// own `GET /v1/models?client_version=…` is forwarded with its version untouched. The only place
/// this version is written; raise it with the supported range.
pub const CODEX_CLIENT_VERSION: &str = "0.169.0";

/// The backend path of the model catalog as the chat path asks for it.
pub fn catalog_path() -> String {
    format!("/models?client_version={CODEX_CLIENT_VERSION}")
}

pub fn to_openai_list(catalog: &Value) -> Value {
    let data: Vec<Value> = catalog
        .get("models")
        .or_else(|| catalog.get("data"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let id = m.get("slug").or_else(|| m.get("id"))?.as_str()?;
            // The catalog hides some models from pickers; a client listing should too.
            if m.get("visibility").and_then(Value::as_str) == Some("hide") {
                return None;
            }
            Some(json!({"id": id, "object": "model", "created": 0, "owned_by": "openai"}))
        })
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_maps_to_an_openai_list() {
        let cases = [
            (
                json!({"models": [{"slug": "gpt-5.5", "visibility": "list"}, {"slug": "old", "visibility": "hide"}, {"display_name": "no slug"}]}),
                json!(["gpt-5.5"]),
            ),
            (
                json!({"object": "list", "data": [{"id": "a"}]}),
                json!(["a"]),
            ),
            (json!({"unexpected": true}), json!([])),
        ];
        for (catalog, ids) in cases {
            let list = to_openai_list(&catalog);
            assert_eq!(list["object"], "list");
            let got: Vec<Value> = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].clone())
                .collect();
            assert_eq!(json!(got), ids, "{catalog}");
            for m in list["data"].as_array().unwrap() {
                assert_eq!(m["object"], "model");
            }
        }
    }
}
