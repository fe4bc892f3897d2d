//! In-process helpers for `make bench` (tests/src/bin/bench.rs runs them; not shipped):
//! - `bench_core seed FILE`: imports every auth.json of FILE (JSON lines
//!   `{"label": …, "auth_json": …}`) into the store of `CODEX_VAULT_HOME`, in one process (one
//!   keychain read, not a thousand CLI starts);
//! - `bench_core select N ITERS`: the cost of one `Selector::select` call over N accounts, for a
//!   new conversation (most headroom, round robin over the tied), a known conversation (affinity
//!   hit) and a pinned label, every account with a usage snapshot. Prints one JSON line;
//! - `bench_core set KEY VALUE`: writes one row of the `settings` table of `CODEX_VAULT_HOME`
//!   (e.g. `endpoint.first_byte_hold off` for the hold-off column).

use codex_vault::account::usage::{UsageSnapshot, UsageWindow};
use codex_vault::account::{Account, Status};
use codex_vault::accounts::Service;
use codex_vault::endpoint::select::{Request, Selector};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

fn account(i: usize) -> Account {
    Account {
        id: format!("00000000-0000-4000-8000-{i:012}"),
        label: format!("acct-{i}"),
        email: Some(format!("user{i}@example.com")),
        chatgpt_account_id: format!("ca-{i}"),
        chatgpt_user_id: format!("user-{i}"),
        plan: Some("plus".into()),
        fedramp: false,
        status: Status::Healthy,
        failure: None,
        last_error: None,
        access_expires_at: Some(i64::MAX / 2),
        access_issued_at: Some(0),
        last_refresh_at: None,
        rate_limited_until: None,
        generation: 1,
        disabled: false,
        created_at: 0,
        updated_at: 0,
        usage_json: None,
        shared_grant_where: None,
        brokered: false,
        broker_holder_seen_at: None,
        restored_at: None,
    }
}

/// Mean µs per call of `f` over `iters` calls (after a tenth as warm-up).
fn per_call_us(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..iters / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn select(n: usize, iters: u64) {
    let accounts: Vec<Account> = (0..n).map(account).collect();
    // Every account has reported usage (as after a while of serving): a lookup per account.
    // A few share the lowest use, so round robin has ties to spread over.
    let window = |used: f64, minutes: i64| UsageWindow {
        used_percent: used,
        window_minutes: Some(minutes),
        resets_at: None,
    };
    let usage: HashMap<String, UsageSnapshot> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let snap = UsageSnapshot {
                primary: Some(window((i % 50) as f64 * 2.0, 300)),
                secondary: Some(window(1.0, 10_080)),
                updated_at: String::new(),
                stale: false,
                quota: None,
            };
            (a.id.clone(), snap)
        })
        .collect();
    let none = HashSet::new();
    let now = 1_800_000_000_000;
    let mut sel = Selector::default();
    let new_conversation = per_call_us(iters, |_| {
        let r = sel.select(
            black_box(&accounts),
            &usage,
            &Request {
                pin: None,
                conversation: None,
                excluded: &none,
            },
            now,
        );
        black_box(r).expect("a healthy account is always selectable");
    });
    let mut sel = Selector::default();
    let keys: Vec<String> = (0..64).map(|i| format!("conv-{i}")).collect();
    let affinity = per_call_us(iters, |i| {
        let r = sel.select(
            black_box(&accounts),
            &usage,
            &Request {
                pin: None,
                conversation: Some(&keys[(i % 64) as usize]),
                excluded: &none,
            },
            now,
        );
        black_box(r).expect("a healthy account is always selectable");
    });
    let mut sel = Selector::default();
    let pin = format!("acct-{}", n / 2);
    let pinned = per_call_us(iters, |_| {
        let r = sel.select(
            black_box(&accounts),
            &usage,
            &Request {
                pin: Some(&pin),
                conversation: None,
                excluded: &none,
            },
            now,
        );
        black_box(r).expect("the pinned account exists");
    });
    println!(
        "{}",
        serde_json::json!({
            "accounts": n,
            "iterations": iters,
            "new_conversation_us": new_conversation,
            "affinity_hit_us": affinity,
            "pinned_us": pinned,
        })
    );
}

fn seed(path: &str) {
    let text = std::fs::read_to_string(path).expect("seed file readable");
    let service = Service::open_default().expect("store opens");
    let t = Instant::now();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("seed line is JSON");
        let label = v["label"].as_str().expect("seed line has a label");
        let auth = v["auth_json"].as_str().expect("seed line has auth_json");
        service
            .import_text(auth, Some(label))
            .expect("seed account imports");
        n += 1;
    }
    println!(
        "{}",
        serde_json::json!({"imported": n, "seconds": t.elapsed().as_secs_f64()})
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["seed", path] => seed(path),
        ["set", key, value] => Service::open_default()
            .expect("store opens")
            .store()
            .set_setting(key, value)
            .expect("setting written"),
        ["select", n, iters] => select(
            n.parse().expect("N is a number"),
            iters.parse().expect("ITERS is a number"),
        ),
        _ => {
            eprintln!("usage: bench_core seed FILE | bench_core select N ITERS | bench_core set KEY VALUE");
            std::process::exit(2);
        }
    }
}
