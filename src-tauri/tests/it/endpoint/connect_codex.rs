//! `connect codex` / `disconnect codex` end to end: the real binary edits a temp `CODEX_HOME`
//! holding a commented `config.toml`, then the real Codex CLI (0.169.0 and 0.171.0) completes a
//! turn through a running `serve` (against the fake) with **no** `CODEX_VAULT_KEY` in its
//! environment; `disconnect` gives the original file back byte for byte; after `endpoint
//! rotate-key` a connected CLI still completes a turn, and a disconnect still restores the file.

use crate::common::*;
use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, ProviderConfig, CODEX_CLI_VERSIONS};
use codex_vault_testkit::FAKE_MODEL;
use std::path::{Path, PathBuf};
use std::time::Duration;

const REPLY: &str = "Hello through a connected Codex.";

/// A user's own config: comments, odd spacing, another provider; plus what keeps the CLI offline
/// in a test (no update check, no analytics, no feedback).
fn original() -> String {
    format!(
        "# My Codex setup — every comment here must survive.\nmodel = \"{FAKE_MODEL}\"    # the fake's model\ncheck_for_update_on_startup = false\n\n[analytics]\nenabled = false   # no telemetry in tests\n\n[feedback]\nenabled = false\n\n# A provider of my own, never touched.\n[model_providers.mine]\nname = \"Mine\"\nbase_url = \"http://127.0.0.1:9/v1\"\n"
    )
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

struct Rig {
    fake: codex_vault_testkit::FakeOpenAi,
    env: DataDir,
    serve: ServeProc,
}

fn rig() -> Rig {
    let fake = fake();
    fake.set_responses_text(REPLY);
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "connect@corp.com", "pro");
    let p = env.write_file("a.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    env.ok(&[
        "accounts",
        "import",
        p.to_str().unwrap(),
        "--codex-cli",
        "detach",
    ]);
    let serve = env.spawn_serve(&fake_env(&fake), env.dir.path().join("serve.log"));
    Rig { fake, env, serve }
}

impl Rig {
    fn connect(&self, home: &CodexHome, extra: &[&str]) -> serde_json::Value {
        let dir = home.codex_home();
        let mut args = vec![
            "connect",
            "codex",
            "--codex-home",
            dir.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&self.env.ok(&args))
    }

    fn disconnect(&self, home: &CodexHome) -> serde_json::Value {
        let dir = home.codex_home();
        json(&self.env.ok(&[
            "disconnect",
            "codex",
            "--codex-home",
            dir.to_str().unwrap(),
            "--json",
        ]))
    }

    fn key(&self) -> String {
        let info = json(&self.env.ok(&["endpoint", "info", "--json"]));
        info["key"].as_str().unwrap().to_string()
    }

    /// Rotates through the CLI, then waits until the running `serve` accepts only the new key.
    fn rotate(&self) -> String {
        let old = self.key();
        self.env.ok(&["endpoint", "rotate-key"]);
        let new = self.key();
        assert_ne!(old, new);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let status = |key: &str| {
            rt.block_on(async {
                reqwest::Client::new()
                    .get(self.serve.url("/v1/models"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        wait_until("serve to take the new key", Duration::from_secs(10), || {
            status(&new) == 200 && status(&old) == 401
        });
        new
    }

    /// One `codex exec` turn in `home`, its environment scrubbed: no CODEX_VAULT_KEY.
    fn turn(&self, bin: &Path, home: &CodexHome, prompt: &str) {
        let before = self.fake.counters().responses_completed;
        let exec = CodexExec::new(bin.to_path_buf(), home, prompt);
        assert!(exec.env.iter().all(|(k, _)| k != "CODEX_VAULT_KEY"));
        let r = exec.run_blocking().expect("codex exec ran");
        assert!(r.success(), "{}: codex exec failed: {r:?}", bin.display());
        assert!(r.stdout.contains(REPLY), "{r:?}");
        assert!(self.fake.counters().responses_completed > before);
    }
}

fn home_with_original() -> (CodexHome, PathBuf) {
    let home = CodexHome::new(&ProviderConfig::new("http://127.0.0.1:9/v1", "UNUSED")).unwrap();
    let path = home.codex_home().join("config.toml");
    std::fs::write(&path, original()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (home, path)
}

fn bins() -> Option<Vec<PathBuf>> {
    CODEX_CLI_VERSIONS
        .iter()
        .map(|v| real_codex_cli(Some(v)))
        .collect()
}

#[test]
fn connect_serves_the_stock_cli_without_an_env_var_and_disconnect_restores_the_file() {
    let Some(bins) = bins() else {
        return;
    };
    let rig = rig();
    let (home, path) = home_with_original();

    let r = rig.connect(&home, &["--make-default"]);
    assert_eq!(r["changed"], true);
    assert_eq!(r["url"], rig.serve.url("/v1"), "the live listener's port");
    let backup = PathBuf::from(r["connection"]["backup"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original());
    assert_eq!(mode(&backup), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    // Every line of the user's file is still there, in order; only ours were added.
    let theirs: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("model_provider = "))
        .take(original().lines().count())
        .collect();
    assert_eq!(theirs, original().lines().collect::<Vec<_>>(), "{text}");
    assert!(
        text.contains("model_provider = \"codex-vault\"\n"),
        "{text}"
    );
    assert!(
        !text.contains(&rig.key()),
        "config.toml holds no key: {text}"
    );
    assert_eq!(mode(&path), 0o644, "the file keeps its mode");
    let key_file = rig.env.vault_home().join("codex-provider.key");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), rig.key());
    assert_eq!(mode(&key_file), 0o600);

    // Connecting again changes nothing (and writes nothing).
    let again = rig.connect(&home, &[]);
    assert_eq!(again["changed"], false);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    for bin in &bins {
        rig.turn(bin, &home, "say hi");
    }

    let d = rig.disconnect(&home);
    assert_eq!(d["outcome"], "restored");
    assert_eq!(std::fs::read(&path).unwrap(), original().as_bytes());
    assert_eq!(mode(&path), 0o644);
    assert!(
        !key_file.exists(),
        "the key file goes with the last connection"
    );
    // Not connected any more: a typed error, the file untouched.
    let dir = home.codex_home();
    let r = rig
        .env
        .run(&["disconnect", "codex", "--codex-home", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[codex_not_connected]"), "{}", r.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), original().as_bytes());
}

#[test]
fn after_rotate_key_a_connected_cli_still_completes_turns_and_disconnect_still_restores() {
    let Some(bins) = bins() else {
        return;
    };
    let rig = rig();

    // The default: command-backed auth. Rotating replaces the key file, not config.toml.
    let (home, path) = home_with_original();
    rig.connect(&home, &["--make-default"]);
    let connected = std::fs::read(&path).unwrap();
    let new = rig.rotate();
    assert_eq!(std::fs::read(&path).unwrap(), connected);
    let key_file = rig.env.vault_home().join("codex-provider.key");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), new);
    for bin in &bins {
        rig.turn(bin, &home, "after a rotate");
    }

    // `--key token`: the key in config.toml (0600, with a warning); a rotate rewrites it.
    let (thome, tpath) = home_with_original();
    let r = rig.env.ok(&[
        "connect",
        "codex",
        "--codex-home",
        thome.codex_home().to_str().unwrap(),
        "--make-default",
        "--key",
        "token",
    ]);
    assert!(r.stderr.contains("dotfiles"), "{}", r.stderr);
    assert_eq!(mode(&tpath), 0o600);
    assert!(std::fs::read_to_string(&tpath).unwrap().contains(&new));
    for bin in &bins {
        rig.turn(bin, &thome, "with the token in config.toml");
    }
    let newer = rig.rotate();
    let text = std::fs::read_to_string(&tpath).unwrap();
    assert!(text.contains(&newer) && !text.contains(&new), "{text}");
    for bin in &bins {
        rig.turn(bin, &thome, "token config after a rotate");
    }

    // Both disconnect to the original, byte for byte, with its mode back.
    assert_eq!(rig.disconnect(&home)["outcome"], "restored");
    assert_eq!(std::fs::read(&path).unwrap(), original().as_bytes());
    assert_eq!(rig.disconnect(&thome)["outcome"], "restored");
    assert_eq!(std::fs::read(&tpath).unwrap(), original().as_bytes());
    assert_eq!(mode(&tpath), 0o644);
}

#[test]
fn disconnect_after_the_user_edited_the_file_removes_only_our_part() {
    let rig = rig();
    let (home, path) = home_with_original();
    rig.connect(&home, &["--make-default", "--status-routes"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&format!(
            "chatgpt_base_url = \"{}\"",
            rig.serve.url("/backend-api/")
        )),
        "{text}"
    );
    // The user edits their own part after we wrote, and a rotate follows: only our lines go.
    let edited = text.replace(
        "enabled = false   # no telemetry",
        "enabled = false   # still none",
    );
    std::fs::write(&path, &edited).unwrap();
    rig.rotate();
    let d = rig.disconnect(&home);
    assert_eq!(d["outcome"], "block_removed");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original().replace("# no telemetry", "# still none")
    );
}

#[test]
fn bad_input_is_refused_with_a_typed_error_and_the_file_untouched() {
    let env = TestVault::builder().data_dir();
    let dir = env.dir.path().join("codex");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    let bad = "model = \"gpt\n[model_providers\n";
    std::fs::write(&path, bad).unwrap();
    let r = env.run(&["connect", "codex", "--codex-home", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("[codex_config_invalid]"), "{}", r.stderr);
    assert!(r.stderr.contains("line"), "says where: {}", r.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no backup, no temp file"
    );

    let missing = env.dir.path().join("no-such-codex-home");
    let r = env.run(&[
        "connect",
        "codex",
        "--codex-home",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[codex_home_missing]"), "{}", r.stderr);
    assert!(!missing.exists());

    // A Codex home with no config.toml yet: created, and removed again by disconnect.
    let fresh = env.dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    env.ok(&["connect", "codex", "--codex-home", fresh.to_str().unwrap()]);
    assert!(fresh.join("config.toml").is_file());
    let out = env.ok(&[
        "disconnect",
        "codex",
        "--codex-home",
        fresh.to_str().unwrap(),
    ]);
    assert!(out.stdout.contains("Removed"), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
}

#[test]
fn the_broker_variable_is_written_for_gui_apps_only_while_autostart_is_on() {
    let env = TestVault::builder().data_dir();
    let home = env.dir.path().join("home");
    let codex = home.join(".codex");
    std::fs::create_dir_all(&codex).unwrap();
    let conf = home.join(".config/environment.d/codex-vault.conf");
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .args(args);
        let r = Run::from(c.output().unwrap());
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r
    };
    let dir = codex.to_str().unwrap();
    let r = run(&["connect", "codex", "--codex-home", dir, "--broker"]);
    assert!(
        r.stdout
            .contains("CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:"),
        "{}",
        r.stdout
    );
    assert!(!conf.exists(), "autostart is off: not written");
    // Start-at-sign-in on (the entry the app's autostart switch creates): written.
    let autostart = home.join(".config/autostart/Codex Vault.desktop");
    std::fs::create_dir_all(autostart.parent().unwrap()).unwrap();
    std::fs::write(&autostart, "[Desktop Entry]\n").unwrap();
    run(&["connect", "codex", "--codex-home", dir]);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.lines().any(
            |l| l.starts_with("CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:")
                && l.ends_with("/oauth/token")
        ),
        "{text}"
    );
    run(&["disconnect", "codex", "--codex-home", dir]);
    assert!(!conf.exists(), "removed on disconnect");
}

/// The app's own controls (in-process, as the Endpoint page and Settings call them): a port
/// change and a key rotation rewrite every connected config, and both still disconnect to the
/// original file byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_port_change_and_key_rotation_rewrite_every_connected_config() {
    use codex_vault::connect::{self, ConnectOptions, DisconnectOutcome, KeyMode};
    let rig = TestVault::builder()
        .setting(
            codex_vault::endpoint::SETTING_PORT,
            &free_port().to_string(),
        )
        .stopped()
        .start()
        .await;
    let first = rig.ctl().start().await.unwrap();
    let service = &rig.core().service;
    let homes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (home, key) in homes.iter().zip([KeyMode::Command, KeyMode::Token]) {
        std::fs::write(home.path().join("config.toml"), original()).unwrap();
        let r = connect::connect(
            service,
            &ConnectOptions {
                codex_home: Some(home.path().to_path_buf()),
                make_default: true,
                key,
                ..ConnectOptions::default()
            },
        )
        .unwrap();
        assert_eq!(r.url, first.url);
    }
    let text = |i: usize| std::fs::read_to_string(homes[i].path().join("config.toml")).unwrap();

    let next = free_port();
    rig.ctl().set_port(next).await.unwrap();
    let url = format!("base_url = \"http://127.0.0.1:{next}/v1\"");
    for i in 0..2 {
        assert!(text(i).contains(&url), "{}", text(i));
        assert!(!text(i).contains(&first.url));
    }

    rig.ctl().rotate_key().await.unwrap();
    let key = rig.ctl().key().unwrap();
    assert!(text(1).contains(&key), "the token config follows the key");
    assert!(!text(0).contains(&key), "the command config holds no key");
    let key_file = rig.data_dir().join(connect::KEY_FILE);
    assert_eq!(std::fs::read_to_string(key_file).unwrap(), key);

    for home in &homes {
        let d = connect::disconnect(service, Some(home.path())).unwrap();
        assert_eq!(d.outcome, DisconnectOutcome::Restored);
        assert_eq!(
            std::fs::read(home.path().join("config.toml")).unwrap(),
            original().as_bytes()
        );
    }
}

/// `serve` restarted on another port (the only listener): the connected config follows it at
/// once, so the connected CLI reaches the live port; disconnect still restores the original.
#[test]
fn a_lone_listener_on_a_new_port_moves_the_connected_configs_with_it() {
    let Some(bins) = bins() else {
        return;
    };
    let mut rig = rig();
    let (home, path) = home_with_original();
    rig.connect(&home, &["--make-default"]);
    let first = rig.serve.port;
    rig.serve.kill_9();
    rig.serve = rig
        .env
        .spawn_serve(&fake_env(&rig.fake), rig.env.dir.path().join("serve2.log"));
    assert_ne!(rig.serve.port, first);
    // Written before `serve` printed its listening line.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&format!("base_url = \"{}\"", rig.serve.url("/v1"))),
        "{text}"
    );
    for bin in &bins {
        rig.turn(bin, &home, "on the new port");
    }
    assert_eq!(rig.disconnect(&home)["outcome"], "restored");
    assert_eq!(std::fs::read(&path).unwrap(), original().as_bytes());
}
