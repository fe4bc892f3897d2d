//! Hostile input, property-tested: the auth.json parser, JWT claim decoding, the token endpoint's
//! error classification and redaction, usage headers, the SSE reader and the chat stream
//! translator never panic or hang on anything, and answer with a clear error. Seeded (same cases
//! every run; `PROPTEST_SEED=<u64>` to explore others) and bounded (`PROPTEST_CASES`, default
//! 256 per property), so CI time is fixed. Plus explicit cases: truncated, huge, non-UTF-8 and
//! deeply nested JSON, 10 MB JWTs, a 10 MB SSE frame trickled in small chunks.

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use codex_vault::account::usage;
use codex_vault::endpoint::chat::names::NameMap;
use codex_vault::endpoint::chat::sse::{Event, SseReader};
use codex_vault::endpoint::chat::stream::{ChatStream, Completion, Out};
use codex_vault::oauth::{auth_json, classify, jwt};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{json, Value};
use std::time::Duration;

fn config() -> Config {
    let seed = std::env::var("PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6861_7264_656e);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // No files written next to the sources: the seed reproduces a failure.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `f` on another thread and fails if it has not returned within `limit` (a hang guard,
/// not a performance threshold: the limit is generous).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer within {limit:?} (hang)")
        }
        Err(_) => panic!("{what}: panicked"),
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[a-z_]{1,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}|email|error|code|message|type|delta|item|response|usage|output_index|item_id|arguments|name|call_id|tokens|id_token", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn jwt_of(payload: &[u8]) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

/// A well-formed Codex auth.json (its id_token unsigned: the parser reads claims, it does not verify).
fn valid_auth_json() -> String {
    let claims = json!({
        "email": "prop@corp.com",
        "https://api.openai.com/auth": {"chatgpt_account_id": "acc-1", "chatgpt_user_id": "user-1", "chatgpt_plan_type": "plus"},
    });
    let access = jwt_of(
        json!({"exp": 1_900_000_000i64, "iat": 1_800_000_000i64})
            .to_string()
            .as_bytes(),
    );
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": jwt_of(claims.to_string().as_bytes()), "access_token": access,
                   "refresh_token": "rt_propertytestpropertytest", "account_id": "acc-1"},
        "last_refresh": "2026-01-01T00:00:00.123456Z"
    })
    .to_string()
}

fn assert_clear(code: codex_vault::error::ErrorCode, message: &str) {
    let code = code.as_str();
    assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "code {code:?}"
    );
    assert!(!message.trim().is_empty(), "an empty message for {code}");
}

#[test]
fn the_valid_fixture_parses() {
    // The mutations below start from a document that really parses, so they probe the deep paths.
    let cred = auth_json::parse(valid_auth_json().as_bytes()).expect("fixture parses");
    let _ = cred;
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn auth_json_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(e) = auth_json::parse(&bytes) {
            assert_clear(e.code(), &e.to_string());
        }
    }

    #[test]
    fn auth_json_mutations_of_a_valid_file_never_panic(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_auth_json().into_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Err(e) = auth_json::parse(&bytes) {
            assert_clear(e.code(), &e.to_string());
        }
    }

    #[test]
    fn auth_json_with_any_token_values_never_panics(id in arb_json(), access in arb_json(), rt in arb_json(), acc in arb_json(), last in arb_json()) {
        let doc = json!({"tokens": {"id_token": id, "access_token": access, "refresh_token": rt, "account_id": acc}, "last_refresh": last});
        if let Err(e) = auth_json::parse(doc.to_string().as_bytes()) {
            assert_clear(e.code(), &e.to_string());
        }
    }

    #[test]
    fn jwt_decoding_never_panics(token in ".{0,300}", payload in prop::collection::vec(any::<u8>(), 0..512), claims in arb_json()) {
        for t in [token.clone(), jwt_of(&payload), jwt_of(claims.to_string().as_bytes()), format!("{token}.{token}.{token}")] {
            match jwt::decode_claims(&t, "id_token") {
                Ok(map) => { let _ = jwt::identity_from_claims(&map); }
                Err(e) => assert_clear(e.code(), &e.to_string()),
            }
            let _ = jwt::access_token_exp(&t);
            let _ = jwt::access_token_iat(&t);
        }
        if let Value::Object(m) = claims {
            if let Err(e) = jwt::identity_from_claims(&m) {
                assert_clear(e.code(), &e.to_string());
            }
        }
    }

    #[test]
    fn token_endpoint_answers_are_always_classified(status in 0u16..1000, body in prop::collection::vec(any::<u8>(), 0..1024), shaped in arb_json(), code in "[ -~]{0,80}", message in ".{0,400}") {
        let bodies = [
            body,
            shaped.to_string().into_bytes(),
            json!({"error": {"code": code, "message": message}}).to_string().into_bytes(),
            json!({"error": code, "error_description": message}).to_string().into_bytes(),
        ];
        for b in bodies {
            match classify::classify_error(status, &b) {
                classify::Failure::MaybeRace { code, message, .. } | classify::Failure::Terminal { code, message, .. } => {
                    // A stored, shown code is code-shaped; a message is redacted and capped.
                    assert!(code.len() <= 64 && !code.chars().any(char::is_control), "{code:?}");
                    assert!(message.chars().count() <= 301 && !message.chars().any(char::is_control), "{message:?}");
                }
                classify::Failure::Transient { reason } => assert!(!reason.is_empty()),
            }
        }
    }

    #[test]
    fn redaction_hides_token_runs(prefix in "[ a-z]{0,20}", token in "[A-Za-z0-9_-]{24,200}", suffix in "[ a-z.]{0,20}") {
        prop_assume!(token.chars().any(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        let shown = classify::redact(&format!("{prefix}{token}{suffix}"));
        prop_assert!(!shown.contains(&token[..24]), "{shown}");
    }

    #[test]
    fn usage_headers_never_panic(values in prop::collection::vec(prop_oneof![
        "[ -~]{0,30}",
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<u32>(), 0i32..400).prop_map(|(m, e)| format!("{m}e{e}")),
        Just("1e308".to_string()), Just("-1e308".to_string()), Just("NaN".to_string()), Just("inf".to_string()),
    ], 10)) {
        let names = ["used-percent", "window-minutes", "reset-at", "reset-after-seconds", "used-percent"];
        let mut h = reqwest::header::HeaderMap::new();
        for (i, v) in values.iter().enumerate() {
            let which = if i < 5 { "primary" } else { "secondary" };
            let name = format!("x-codex-{which}-{}", names[i % 5]);
            if let Ok(v) = reqwest::header::HeaderValue::from_str(v) {
                h.insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
            }
        }
        if let Some(s) = usage::from_headers(&h) {
            let headroom = s.headroom();
            prop_assert!((0.0..=100.0).contains(&headroom));
            let _ = serde_json::to_string(&s).unwrap();
        }
    }

    #[test]
    fn sse_reader_is_split_invariant_and_never_panics(
        bytes in prop::collection::vec(prop_oneof![
            4 => any::<u8>(),
            2 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => Just(b':'),
        ], 0..2048),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut whole = SseReader::default();
        let expected: Vec<Event> = whole.push(&bytes);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut reader = SseReader::default();
        let mut got = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            got.extend(reader.push(&bytes[from..p]));
            from = p;
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn the_chat_translator_never_panics(events in prop::collection::vec((prop_oneof![
        Just("response.created"), Just("response.output_text.delta"), Just("response.reasoning_summary_text.delta"),
        Just("response.output_item.added"), Just("response.function_call_arguments.delta"),
        Just("response.function_call_arguments.done"), Just("response.output_item.done"),
        Just("response.completed"), Just("response.done"), Just("response.incomplete"), Just("response.failed"),
        Just("error"), Just("response.in_progress"), Just(""),
    ], arb_json()), 0..24), include_usage in any::<bool>()) {
        let mut s = ChatStream::new("chatcmpl-x".into(), "gpt-5.5".into(), 0, include_usage, NameMap::default());
        let mut done = Completion::default();
        let mut ended = false;
        for (kind, data) in &events {
            for out in s.on_event(kind, data) {
                prop_assert!(!ended, "nothing follows Done or Fail");
                match out {
                    Out::Chunk(c) => done.absorb(&c),
                    Out::Fail(_) | Out::Done => ended = true,
                }
            }
        }
        prop_assert_eq!(ended, s.is_over());
        let _ = done.into_json();
    }

    #[test]
    fn completion_absorbs_any_chunk(chunks in prop::collection::vec(arb_json(), 0..12)) {
        let mut c = Completion::default();
        for ch in &chunks {
            c.absorb(ch);
        }
        let _ = c.into_json();
    }
}

// ---- Explicit cases ----

#[test]
fn truncated_huge_non_utf8_and_deeply_nested_json_get_clear_errors() {
    let valid = valid_auth_json();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", valid.as_bytes()[..valid.len() / 2].to_vec()),
        ("non-UTF-8", {
            let mut b = valid.clone().into_bytes();
            b.splice(10..10, [0xff, 0xfe, 0xc3]);
            b
        }),
        (
            "Latin-1 file",
            b"{\"tokens\": {\"id_token\": \"caf\xe9\"}}".to_vec(),
        ),
        ("deeply nested arrays", {
            let mut b = vec![b'['; 100_000];
            b.extend(vec![b']'; 100_000]);
            b
        }),
        (
            "deeply nested objects",
            "{\"a\":".repeat(100_000).into_bytes(),
        ),
        ("NUL bytes", vec![0u8; 4096]),
        ("a BOM then garbage", b"\xef\xbb\xbf{{{".to_vec()),
    ];
    // Huge: 20 MB of whitespace around a valid file, and a 20 MB string value.
    let mut huge = vec![b' '; 20 * 1024 * 1024];
    huge.extend_from_slice(valid.as_bytes());
    cases.push(("20 MB of padding", huge));
    let mut v: Value = serde_json::from_str(&valid).unwrap();
    v["tokens"]["refresh_token"] = json!("r".repeat(20 * 1024 * 1024));
    cases.push(("a 20 MB refresh token", v.to_string().into_bytes()));

    for (what, bytes) in cases {
        let result = within(Duration::from_secs(60), what, move || {
            auth_json::parse(&bytes)
                .map(|_| ())
                .map_err(|e| (e.code(), e.to_string()))
        });
        match result {
            Ok(()) => assert!(
                what.contains("padding") || what.contains("refresh token"),
                "{what} was accepted"
            ),
            Err((code, message)) => {
                assert_clear(code, &message);
                assert!(
                    message.len() < 1000,
                    "{what}: the error must not echo the input ({} bytes)",
                    message.len()
                );
            }
        }
    }
}

#[test]
fn ten_megabyte_jwts_are_decoded_or_refused_without_hanging() {
    let huge_claims = json!({"email": "big@corp.com", "pad": "x".repeat(10 * 1024 * 1024)});
    let tokens = [
        jwt_of(huge_claims.to_string().as_bytes()),
        "a".repeat(10 * 1024 * 1024),
        format!("eyJ.{}.sig", "A".repeat(10 * 1024 * 1024)),
        ".".repeat(10 * 1024 * 1024),
    ];
    for (i, t) in tokens.into_iter().enumerate() {
        let what = format!("10 MB JWT #{i}");
        let (decoded, _exp) = within(Duration::from_secs(60), &what, move || {
            let d = jwt::decode_claims(&t, "id_token")
                .map(|m| m.len())
                .map_err(|e| (e.code(), e.to_string()));
            (d, jwt::access_token_exp(&t))
        });
        if let Err((code, message)) = decoded {
            assert_clear(code, &message);
            assert!(message.len() < 1000, "{what}: the error echoes the token");
        }
    }
    // As an auth.json: an over-sized file is refused as such, or parsed; never a hang or a panic.
    let mut v: Value = serde_json::from_str(&valid_auth_json()).unwrap();
    v["tokens"]["access_token"] = json!(jwt_of(huge_claims.to_string().as_bytes()));
    let bytes = v.to_string().into_bytes();
    let r = within(
        Duration::from_secs(60),
        "auth.json with a 10 MB JWT",
        move || {
            auth_json::parse(&bytes)
                .map(|_| ())
                .map_err(|e| (e.code(), e.to_string()))
        },
    );
    if let Err((code, message)) = r {
        assert_clear(code, &message);
    }
}

#[test]
fn a_ten_megabyte_sse_frame_trickled_in_small_chunks_comes_out_whole() {
    let data = "x".repeat(10 * 1024 * 1024);
    let wire =
        format!("event: response.output_text.delta\ndata: {data}\n\ndata: [DONE]\n\n").into_bytes();
    let events = within(
        Duration::from_secs(120),
        "10 MB SSE frame in 4 KB chunks",
        move || {
            let mut r = SseReader::default();
            let mut out = Vec::new();
            for chunk in wire.chunks(4096) {
                out.extend(r.push(chunk));
            }
            out
        },
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].data.len(), 10 * 1024 * 1024);
    assert_eq!(events[1].data, "[DONE]");
}

#[test]
fn usage_reset_far_in_the_future_does_not_overflow() {
    // A reset-after of 1e300 s once overflowed `now + secs * 1000` (a panic in debug builds).
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-codex-primary-used-percent", "10".parse().unwrap());
    h.insert(
        "x-codex-primary-reset-after-seconds",
        "1e300".parse().unwrap(),
    );
    let s = usage::from_headers(&h).expect("a snapshot");
    assert_eq!(s.primary.unwrap().used_percent, 10.0);
}

#[test]
fn header_and_terminal_injection_in_labels_is_refused_and_changes_nothing() {
    let fake = common::fake();
    let env = common::TestVault::builder().data_dir();
    let t = common::account(&fake, "inject@corp.com", "plus");
    let p = env.write_file(
        "a.json",
        common::auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", p.to_str().unwrap(), "--label", "ok"]);
    let before = env.snapshot();
    for label in [
        "x\r\nX-Injected: 1",
        "x\nSet-Cookie: a=b",
        "x\r",
        "\u{1b}[31mred",
        "a\u{85}b",
        "tab\there",
    ] {
        let r = env.run(&["accounts", "import", p.to_str().unwrap(), "--label", label]);
        assert_eq!(r.code, 1, "{label:?} accepted: {}", r.stdout);
        assert!(
            r.stderr.contains("[invalid_label]") || r.stderr.contains("invalid_label"),
            "{}",
            r.stderr
        );
        assert!(
            !r.stderr.contains('\u{1b}'),
            "the error echoes a terminal escape"
        );
    }
    assert_eq!(env.snapshot(), before, "a refused label changed the store");
    assert_eq!(env.list_json()[0]["label"], "ok");
}
