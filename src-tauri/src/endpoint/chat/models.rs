//! The backend's model catalog (`{"models":[{"slug",…}]}`, the Codex CLI's shape) → OpenAI's
//! `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`. Pure.

use serde_json::{json, Value};

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
