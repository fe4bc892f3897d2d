//! `GET /backend-api/codex/models`: a catalog in the shape the Codex CLI 0.169 deserializes
//! (`ModelsResponse { models: Vec<ModelInfo> }`). The field set is the one of the catalog that
//! CLI ships inside its own binary, so every field it requires is present; the values describe one
//! plain text model with short instructions.

use serde_json::{json, Value};

/// The model slug the fake advertises (and the default the Codex CLI helper configures).
pub const FAKE_MODEL: &str = "gpt-5.5";

const ETAG: &str = "\"fake-openai-models-1\"";

const INSTRUCTIONS: &str = "You are Codex, a coding agent. Answer the user concisely.";

fn model_info(slug: &str, display_name: &str, priority: i64) -> Value {
    let mut info = json!({
        "slug": slug,
        "display_name": display_name,
        "description": "Model served by the fake Codex backend.",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": [
            {"effort": "low", "description": "Fast responses with lighter reasoning"},
            {"effort": "medium", "description": "Balances speed and reasoning depth for everyday tasks"},
            {"effort": "high", "description": "Greater reasoning depth for complex problems"}
        ],
        "shell_type": "shell_command",
        "visibility": "list",
        "minimal_client_version": "0.100.0",
        "supported_in_api": true,
        "availability_nux": null,
        "upgrade": null,
        "priority": priority,
        "base_instructions": INSTRUCTIONS,
        "model_messages": {
            "instructions_template": INSTRUCTIONS,
            "instructions_variables": null
        },
    });
    // Two literals: one would exceed serde_json's macro recursion limit.
    let more = json!({
        "prefer_websockets": false,
        "support_verbosity": true,
        "default_verbosity": "low",
        "apply_patch_tool_type": "freeform",
        "web_search_tool_type": "text_and_image",
        "input_modalities": ["text", "image"],
        "supports_image_detail_original": false,
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": true,
        "tool_mode": null,
        "multi_agent_version": null,
        "multi_agent_reasoning_effort": null,
        "use_responses_lite": false,
        "supports_reasoning_effort_updates": false,
        "include_skills_usage_instructions": false,
        "include_apps_usage_instructions": false,
        "include_plugin_usage_instructions": false,
        "guardian": null,
        "node_repl_auto_review_required": false,
        "node_repl_disabled": false,
        "requires_sandboxed_review": false,
        "auto_review_model_override": null,
        "model_specialty": null,
        "context_window": 272000,
        "max_context_window": 272000,
        "auto_compact_token_limit": null,
        "comp_hash": "1",
        "default_reasoning_summary": "none",
        "experimental_supported_tools": [],
        "available_in_plans": ["free", "go", "plus", "pro", "team", "business", "enterprise", "edu"],
        "supports_search_tool": false,
        "supports_experimental_context": false,
        "default_service_tier": null,
        "service_tiers": [],
        "additional_speed_tiers": [],
        "supports_reasoning_summary_parameter": true,
        "supports_reasoning_summaries": true
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut info, more) {
        base.extend(more);
    }
    info
}

/// The body and `ETag` of a models answer.
pub(crate) fn models_response() -> (Value, String) {
    (
        json!({ "models": [model_info(FAKE_MODEL, "GPT-5.5", 1)] }),
        ETAG.to_string(),
    )
}
