//! `accounts import PATH…` with a folder of sign-in files in every format other tools write
//! (README § Bulk import), through the real binary: `--dry-run` lists what each would do and
//! writes nothing; the import stores exactly the right rows, keeps newer tokens, gives a clashing
//! label a suffix, names the broken file, and exits 1 after importing the rest.

use crate::common;

use codex_vault_testkit::IssuedTokens;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

fn cliproxyapi(t: &IssuedTokens, email: &str, last_refresh: &str) -> String {
    json!({"id_token": t.id_token, "access_token": t.access_token, "refresh_token": t.refresh_token,
        "account_id": t.account_id, "last_refresh": last_refresh, "email": email, "type": "codex",
        "expired": "2026-12-30T00:00:00Z"})
    .to_string()
}

fn sub2api_row(name: &str, platform: &str, t: &IssuedTokens) -> Value {
    json!({"name": name, "platform": platform, "type": "oauth", "concurrency": 3, "priority": 50,
        "credentials": {"id_token": t.id_token, "access_token": t.access_token,
            "refresh_token": t.refresh_token, "chatgpt_account_id": t.account_id}})
}

fn opencode(t: &IssuedTokens) -> String {
    json!({"openai": {"type": "oauth", "refresh": t.refresh_token, "access": t.access_token,
        "expires": 1_900_000_000_000_i64, "accountId": t.account_id}})
    .to_string()
}

fn codex_lb(t: &IssuedTokens, email: &str) -> String {
    let codex: Value = serde_json::from_str(&auth_json(t, "2026-11-20T00:00:00Z")).unwrap();
    json!({"filename": "x.json", "account": {"accountId": "lb-1", "chatgptAccountId": t.account_id, "email": email},
        "tokens": {"idToken": t.id_token, "accessToken": t.access_token, "refreshToken": t.refresh_token, "expiresAtMs": 0},
        "codexAuthJson": codex,
        "opencodeAuthJson": {"openai": {"type": "oauth", "refresh": t.refresh_token, "access": t.access_token, "expires": 0}}})
    .to_string()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// file name (+ locator) → the item of `--json`.
fn by_place(plan: &Value) -> BTreeMap<String, Value> {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let file = Path::new(i["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let loc = i["locator"].as_str().unwrap();
            let key = if loc.is_empty() {
                file
            } else {
                format!("{file} {loc}")
            };
            (key, i.clone())
        })
        .collect()
}

/// What the folder holds that the checks compare with.
struct Folder {
    dir: std::path::PathBuf,
    work: IssuedTokens,
    upd_new: IssuedTokens,
    codex_a: IssuedTokens,
    oc: IssuedTokens,
    s2b: IssuedTokens,
}

/// Two accounts held, then a folder with one file of each format, a broken one, a duplicate,
/// an older copy of a held account and a newer copy of another.
fn folder_of_every_format(fake: &codex_vault_testkit::FakeOpenAi, env: &DataDir) -> Folder {
    // Held before: `work` (its file in the folder is older), `held-newer` (the folder's is newer).
    let work = account(fake, "work@corp.com", "team");
    env.import_auth_json(&work, "2026-11-25T00:00:00Z");
    let upd_old = account(fake, "upd@corp.com", "plus");
    let held = env.write_file(
        "held.json",
        auth_json(&upd_old, "2026-11-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", held.to_str().unwrap()]);
    let upd_new = fake.issue_grant(&upd_old.account_id, None);
    let work_old = fake.issue_grant(&work.account_id, None);

    let codex_a = account(fake, "codex-a@corp.com", "plus");
    let cpa = account(fake, "cpa@corp.com", "pro");
    let s2a = account(fake, "s2a@corp.com", "team");
    let s2b = account(fake, "s2b@corp.com", "plus");
    let lb = account(fake, "lb@corp.com", "plus");
    let oc = account(fake, "oc@corp.com", "plus");
    let dup_older = fake.issue_grant(&codex_a.account_id, None);

    let dir = env.dir.path().join("peers");
    std::fs::create_dir(&dir).unwrap();
    write(
        &dir,
        "a-codex.json",
        &auth_json(&codex_a, "2026-11-28T00:00:00Z"),
    );
    write(
        &dir,
        "b-cliproxyapi.json",
        &cliproxyapi(&cpa, "cpa@corp.com", "2026-11-28T00:00:00Z"),
    );
    write(
        &dir,
        "c-sub2api.json",
        &json!({"code": 0, "message": "success", "data": {"type": "sub2api-data", "version": 1,
            "exported_at": "2026-11-28T00:00:00Z", "proxies": [],
            "accounts": [sub2api_row("work", "openai", &s2a), sub2api_row("claude", "anthropic", &s2b),
                         sub2api_row("s2b", "openai", &s2b)]}})
        .to_string(),
    );
    write(&dir, "d-codex-lb.json", &codex_lb(&lb, "lb@corp.com"));
    write(&dir, "e-opencode.json", &opencode(&oc));
    write(&dir, "f-broken.json", "{\"tokens\": {\"id_token\": ");
    write(
        &dir,
        "g-duplicate.json",
        &auth_json(&dup_older, "2026-11-02T00:00:00Z"),
    );
    write(
        &dir,
        "h-work-older.json",
        &auth_json(&work_old, "2026-11-10T00:00:00Z"),
    );
    write(
        &dir,
        "i-upd-newer.json",
        &auth_json(&upd_new, "2026-11-29T00:00:00Z"),
    );
    Folder {
        dir,
        work,
        upd_new,
        codex_a,
        oc,
        s2b,
    }
}

/// `--dry-run`: what each would do, nothing written, no call to OpenAI.
fn check_preview(fake: &codex_vault_testkit::FakeOpenAi, env: &DataDir, f: &Folder) {
    let dir_arg = f.dir.to_str().unwrap();
    let calls = fake.counters().token_calls;
    let before = env.snapshot();
    let r = env.run(&["accounts", "import", "--dry-run", "--json", dir_arg]);
    assert_eq!(
        r.code, 1,
        "a broken file makes the exit code 1: {}",
        r.stderr
    );
    assert_eq!(env.snapshot(), before, "--dry-run wrote nothing");
    let plan: Value = serde_json::from_str(&r.stdout).unwrap();
    let items = by_place(&plan);
    let want = [
        ("a-codex.json", "new", "codex_auth_json", Some("codex-a")),
        ("b-cliproxyapi.json", "new", "cli_proxy_api", Some("cpa")),
        (
            "c-sub2api.json accounts[0]",
            "new",
            "sub2api",
            Some("work-2"),
        ),
        ("c-sub2api.json accounts[2]", "new", "sub2api", Some("s2b")),
        ("d-codex-lb.json", "new", "codex_lb_export", Some("lb")),
        ("e-opencode.json", "new", "open_code", Some("oc")),
        ("f-broken.json", "invalid", "", None),
        ("g-duplicate.json", "duplicate", "codex_auth_json", None),
        (
            "h-work-older.json",
            "kept_newer",
            "codex_auth_json",
            Some("work"),
        ),
        ("i-upd-newer.json", "update", "codex_auth_json", Some("upd")),
    ];
    assert_eq!(items.len(), want.len(), "{items:#?}");
    for (place, action, format, label) in want {
        let i = &items[place];
        assert_eq!(i["action"], action, "{place}: {i}");
        assert_eq!(i["format"].as_str().unwrap_or(""), format, "{place}");
        if let Some(l) = label {
            assert_eq!(i["label"], l, "{place}");
        }
    }
    assert!(items["c-sub2api.json accounts[0]"]["label_note"]
        .as_str()
        .unwrap()
        .contains("`work` is another account's label"));
    assert!(items["f-broken.json"]["reason"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert!(items["g-duplicate.json"]["reason"]
        .as_str()
        .unwrap()
        .contains("a-codex.json"));
    assert!(plan["note"]
        .as_str()
        .unwrap()
        .contains("must stop refreshing"));
    assert_no_tokens(r.stdout.as_bytes(), &f.codex_a, "the preview");
    assert_eq!(fake.counters().token_calls, calls, "a preview calls no one");
}

#[test]
fn a_folder_of_every_format_is_previewed_then_imported_row_by_row() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let f = folder_of_every_format(&fake, &env);
    let calls = fake.counters().token_calls;
    check_preview(&fake, &env, &f);
    let dir_arg = f.dir.to_str().unwrap();
    let r = env.run(&["accounts", "import", dir_arg]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let broken_line = r
        .stdout
        .lines()
        .find(|l| l.contains("f-broken.json"))
        .expect("a line names the broken file");
    assert!(
        broken_line.contains("invalid: it is not valid JSON"),
        "{broken_line}"
    );
    assert!(
        r.stdout
            .contains("Imported: 6 new, 1 updated, 1 kept newer; 1 duplicate, 1 invalid."),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("must stop refreshing"), "{}", r.stderr);

    let accounts = env.list_json();
    let labels: BTreeMap<String, String> = accounts
        .iter()
        .map(|a| {
            (
                a["label"].as_str().unwrap().to_string(),
                a["email"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("work", "work@corp.com"),
        ("upd", "upd@corp.com"),
        ("codex-a", "codex-a@corp.com"),
        ("cpa", "cpa@corp.com"),
        ("work-2", "s2a@corp.com"),
        ("s2b", "s2b@corp.com"),
        ("lb", "lb@corp.com"),
        ("oc", "oc@corp.com"),
    ]
    .into_iter()
    .map(|(l, e)| (l.to_string(), e.to_string()))
    .collect();
    assert_eq!(labels, want);
    // The tokens each account holds now: the newest copy, never an older one.
    for (label, t) in [
        ("work", &f.work),
        ("upd", &f.upd_new),
        ("codex-a", &f.codex_a),
        ("oc", &f.oc),
        ("s2b", &f.s2b),
    ] {
        let r = env.ok(&["token", label]);
        assert_eq!(r.stdout.trim(), t.access_token, "{label}");
    }
    assert_eq!(
        fake.counters().token_calls,
        calls,
        "importing calls no one: every token above was fresh"
    );

    // Again: everything is held now, nothing is added twice.
    let r = env.run(&["accounts", "import", "--json", dir_arg]);
    let again = by_place(&serde_json::from_str(&r.stdout).unwrap());
    assert!(
        again
            .values()
            .all(|i| !matches!(i["action"].as_str(), Some("new") | Some("update"))),
        "{again:#?}"
    );
    assert_eq!(env.list_json().len(), 8);
}

#[test]
fn one_codex_auth_json_keeps_the_single_import_and_bad_arguments_say_why() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "one@corp.com", "plus");
    let p = env.write_file("one.json", auth_json(&t, "2026-11-01T00:00:00Z").as_bytes());
    let r = env.ok(&["accounts", "import", p.to_str().unwrap()]);
    assert!(r.stdout.starts_with("Imported account one"), "{}", r.stdout);

    let other = account(&fake, "two@corp.com", "plus");
    let q = env.write_file(
        "two.json",
        auth_json(&other, "2026-11-01T00:00:00Z").as_bytes(),
    );
    let r = env.run(&[
        "accounts",
        "import",
        "--label",
        "x",
        p.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--label names one account"),
        "{}",
        r.stderr
    );
    let r = env.run(&["accounts", "import", "-", q.to_str().unwrap()]);
    assert!(r.stderr.contains("standard input"), "{}", r.stderr);
    let r = env.run(&[
        "accounts",
        "import",
        env.dir.path().join("nope").to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("nope") && r.stderr.contains("[bulk_unreadable]"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.list_json().len(),
        1,
        "a refused bulk import writes nothing"
    );
}

#[test]
fn the_codex_clis_own_auth_json_in_a_bulk_import_keeps_the_broker_choice() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let live = account(&fake, "live@corp.com", "plus");
    std::fs::create_dir_all(env.codex_home()).unwrap();
    let live_path = env.codex_home().join("auth.json");
    std::fs::write(&live_path, auth_json(&live, "2026-11-01T00:00:00Z")).unwrap();
    let other = account(&fake, "other@corp.com", "plus");
    let other_path = env.write_file(
        "other.json",
        cliproxyapi(&other, "other@corp.com", "2026-11-01T00:00:00Z").as_bytes(),
    );
    let r = Run::from(
        env.cmd()
            .env("HOME", env.dir.path())
            .args([
                "accounts",
                "import",
                "--json",
                live_path.to_str().unwrap(),
                other_path.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let items = by_place(&serde_json::from_str(&r.stdout).unwrap());
    let cli = &items["auth.json"];
    assert_eq!(cli["codex_cli"], true, "{cli}");
    assert!(
        cli["codex_cli_note"]
            .as_str()
            .unwrap()
            .contains("CODEX_REFRESH_TOKEN_URL_OVERRIDE"),
        "{cli}"
    );
    assert_eq!(items["other.json"]["codex_cli"], false);
    assert!(live_path.exists(), "broker: the CLI keeps its file");
    // As a single import of it: the CLI's file is the other holder of that grant, by its path.
    let accounts = env.list_json();
    let held_at = |email: &str| {
        accounts
            .iter()
            .find(|a| a["email"] == email)
            .map(|a| a["shared_grant_where"].clone())
            .unwrap()
    };
    assert_eq!(held_at("live@corp.com"), live_path.display().to_string());
    assert_eq!(held_at("other@corp.com"), Value::Null);
}
