//! The official OpenAI Python SDK (PyPI `openai`, installed by scripts/ensure-openai-sdk.sh)
//! against the endpoint backed by the fake: Chat Completions streaming and not, a tool-calling
//! round trip, long tool names, `/v1/models`, an error, and `responses.create(stream=True)`.
//! The SDK is a client nobody here wrote, so it checks our wire shapes, not our own beliefs.

use crate::common::vault::TestVault;
use std::path::PathBuf;
use std::time::Duration;

const TEXT: &str = "Hello from the fake Codex backend.";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("src-tauri has a parent")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_speaks_chat_and_responses_through_the_endpoint() {
    let python = workspace().join(".cache/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "the OpenAI SDK venv is missing: run scripts/ensure-openai-sdk.sh (make deps-test)"
    );
    let rig = TestVault::new(1).await;
    rig.fake.set_responses_text(TEXT);
    let child = tokio::process::Command::new(&python)
        .arg(workspace().join("tests/sdk/chat_sdk.py"))
        .env("CV_BASE_URL", rig.url("/v1"))
        .env("CV_KEY", &rig.key)
        .env("CV_TEXT", TEXT)
        .env("CV_MODEL", codex_vault_testkit::FAKE_MODEL)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the SDK script finished within 2 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PASS "))
        .collect();
    assert_eq!(
        passed,
        [
            "chat_non_streaming",
            "chat_streaming",
            "chat_tool_call_streaming",
            "chat_tool_result_continues",
            "chat_long_tool_name_restored",
            "responses_streaming",
            "models_list",
            "n_above_one_refused",
        ],
        "{stdout}\n{stderr}"
    );
    // Six answers came from the backend, none retried; `n = 2` was refused before reaching it.
    let n = rig.fake.counters();
    assert_eq!((n.responses_calls, n.models_calls), (6, 1), "{n:?}");
}
