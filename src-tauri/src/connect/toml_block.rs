//! The edits `connect codex` makes to a Codex `config.toml`, on a `toml_edit` document so that
//! everything else in the file — comments, order, spacing, other providers — is kept byte for
//! byte: our provider table `[model_providers.codex-vault]`, and optionally the top-level
//! `model_provider` and `chatgpt_base_url` keys. Pure (text in, text out); the file handling is
//! in `file`.

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

/// Our provider id (protocol.md § Pointing the stock Codex CLI; built-in ids cannot be redefined).
pub const PROVIDER_ID: &str = "codex-vault";
pub const PROVIDER_NAME: &str = "Codex Vault";
pub const MODEL_PROVIDER: &str = "model_provider";
pub const CHATGPT_BASE_URL: &str = "chatgpt_base_url";
/// The env var of the `env_key` fallback (the one `endpoint info` names too).
pub const KEY_ENV: &str = "CODEX_VAULT_KEY";

/// How the CLI gets the local key (see the README's "Connect Codex").
pub enum KeySource<'a> {
    /// `auth = { command, args }`: the CLI runs `program key_file` and sends what it prints
    /// (re-run on a 401 and every few minutes, so a rotated key is picked up without a restart).
    Command { program: &'a str, key_file: &'a str },
    /// `experimental_bearer_token`: the key itself in config.toml (then made 0600).
    Token(&'a str),
    /// `env_key = "CODEX_VAULT_KEY"`: the user exports the key in the CLI's environment.
    Env,
}

/// Keys of our table that say where the key comes from; exactly one of them is written (the
/// CLI refuses `auth` combined with another source).
const KEY_KEYS: &[&str] = &[
    "auth",
    "experimental_bearer_token",
    "env_key",
    "requires_openai_auth",
];

/// A problem with the file's shape (valid TOML we will not edit); the caller names the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

pub fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| e.to_string())
}

/// The highest position of any table header in the document, so a new table goes last.
fn last_position(table: &Table) -> isize {
    let mut max = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        match item {
            Item::Table(t) => max = max.max(last_position(t)),
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    max = max.max(last_position(t));
                }
            }
            _ => {}
        }
    }
    max
}

/// Sets `key` to `v` in `table`, keeping the spacing and comment around an existing value.
fn set_value(table: &mut Table, key: &str, v: impl Into<Value>) -> bool {
    let mut v = v.into();
    if let Some(old) = table.get_mut(key).and_then(Item::as_value_mut) {
        if old.to_string().trim() == v.to_string().trim() {
            return false;
        }
        *v.decor_mut() = old.decor().clone();
        *old = v;
        return true;
    }
    table.insert(key, Item::Value(v));
    true
}

fn providers_mut(doc: &mut DocumentMut) -> Result<&mut Table, Unsupported> {
    let root = doc.as_table_mut();
    if !root.contains_key("model_providers") {
        let mut t = Table::new();
        t.set_implicit(true);
        root.insert("model_providers", Item::Table(t));
    }
    match root.get_mut("model_providers") {
        Some(Item::Table(t)) => Ok(t),
        _ => Err(Unsupported(
            "`model_providers` is not a [model_providers] table (an inline table or a value); edit it into one, or add the block `codex-vault endpoint info` prints yourself".into(),
        )),
    }
}

/// Writes (or updates) our provider table; returns whether anything changed.
pub fn write_block(
    doc: &mut DocumentMut,
    base_url: &str,
    key: &KeySource<'_>,
) -> Result<bool, Unsupported> {
    let next = last_position(doc.as_table()) + 1;
    let blank = doc.to_string().trim().is_empty();
    let providers = providers_mut(doc)?;
    let mut changed = false;
    if !providers.contains_key(PROVIDER_ID) {
        let mut t = Table::new();
        t.set_position(Some(next));
        // A blank line before our header, as a person would write it (none atop an empty file).
        t.decor_mut().set_prefix(if blank { "" } else { "\n" });
        providers.insert(PROVIDER_ID, Item::Table(t));
        changed = true;
    }
    let Some(Item::Table(ours)) = providers.get_mut(PROVIDER_ID) else {
        return Err(Unsupported(format!(
            "`model_providers.{PROVIDER_ID}` is not a table; remove it or make it [model_providers.{PROVIDER_ID}]"
        )));
    };
    changed |= set_value(ours, "name", PROVIDER_NAME);
    changed |= set_value(ours, "base_url", base_url);
    changed |= set_value(ours, "wire_api", "responses");
    let keep = match key {
        KeySource::Command { program, key_file } => {
            let mut auth = InlineTable::new();
            auth.insert("command", (*program).into());
            let mut args = Array::new();
            args.push(*key_file);
            auth.insert("args", Value::Array(args));
            changed |= set_value(ours, "auth", auth);
            "auth"
        }
        KeySource::Token(token) => {
            changed |= set_value(ours, "experimental_bearer_token", *token);
            "experimental_bearer_token"
        }
        KeySource::Env => {
            changed |= set_value(ours, "env_key", KEY_ENV);
            "env_key"
        }
    };
    for k in KEY_KEYS.iter().filter(|k| **k != keep) {
        changed |= ours.remove(k).is_some();
    }
    Ok(changed)
}

/// The top-level string `key`, if it is one.
pub fn top_string(doc: &DocumentMut, key: &str) -> Option<String> {
    doc.get(key).and_then(Item::as_str).map(str::to_string)
}

/// Sets a top-level string key (keeping the decor of a value it replaces); returns whether it
/// changed. A new key goes after the last top-level key, before the first table.
pub fn set_top(doc: &mut DocumentMut, key: &str, value: &str) -> bool {
    set_value(doc.as_table_mut(), key, value)
}

/// Undoes `set_top`: when `key` still holds `ours`, it gets `previous` back (or is removed when
/// there was none); a value someone else set since is left alone. Returns whether it changed.
pub fn restore_top(doc: &mut DocumentMut, key: &str, ours: &str, previous: Option<&str>) -> bool {
    if top_string(doc, key).as_deref() != Some(ours) {
        return false;
    }
    match previous {
        Some(p) => set_top(doc, key, p),
        None => doc.as_table_mut().remove(key).is_some(),
    }
}

/// Removes our provider table. When the file had a table of that name before we first wrote
/// (`original`, parsed from the backup: the block `endpoint info` printed, pasted by hand), that
/// one is put back as it was. Returns whether anything changed.
pub fn remove_block(doc: &mut DocumentMut, original: Option<&DocumentMut>) -> bool {
    let before = original
        .and_then(|o| o.get("model_providers"))
        .and_then(Item::as_table)
        .and_then(|t| t.get(PROVIDER_ID))
        .cloned();
    let Some(Item::Table(providers)) = doc.as_table_mut().get_mut("model_providers") else {
        return false;
    };
    let changed = match before {
        Some(item) => {
            let same = providers.get(PROVIDER_ID).map(|i| i.to_string()) == Some(item.to_string());
            providers.insert(PROVIDER_ID, item);
            !same
        }
        None => providers.remove(PROVIDER_ID).is_some(),
    };
    let empty_implicit = providers.is_empty() && providers.is_implicit();
    if empty_implicit {
        doc.as_table_mut().remove("model_providers");
    }
    changed
}

/// Whether the document holds our provider table.
pub fn has_block(doc: &DocumentMut) -> bool {
    doc.get("model_providers")
        .and_then(Item::as_table)
        .is_some_and(|t| t.contains_key(PROVIDER_ID))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "\
# My Codex setup. Keep this comment.
model = \"gpt-5.4\"   # the model I like
approval_policy = \"on-request\"

[tui]
# notifications on
notifications = true

[model_providers.ollama]
name = \"Ollama\"
base_url = \"http://localhost:11434/v1\"

# trailing comment
";

    fn cmd() -> KeySource<'static> {
        KeySource::Command {
            program: "/usr/bin/cat",
            key_file: "/data/codex-provider.key",
        }
    }

    fn connect(text: &str, default: bool) -> String {
        let mut doc = parse(text).unwrap();
        write_block(&mut doc, "http://127.0.0.1:8417/v1", &cmd()).unwrap();
        if default {
            set_top(&mut doc, MODEL_PROVIDER, PROVIDER_ID);
        }
        doc.to_string()
    }

    #[test]
    fn an_untouched_document_prints_back_byte_for_byte() {
        assert_eq!(parse(USER).unwrap().to_string(), USER);
    }

    const OURS: &str = "\n[model_providers.codex-vault]\nname = \"Codex Vault\"\nbase_url = \"http://127.0.0.1:8417/v1\"\nwire_api = \"responses\"\nauth = { command = \"/usr/bin/cat\", args = [\"/data/codex-provider.key\"] }\n";

    #[test]
    fn the_block_is_added_after_the_last_table_and_everything_else_kept_byte_for_byte() {
        let out = connect(USER, false);
        // The comment after the last table stays last; our table goes just before it.
        let at = USER.find("\n# trailing comment").unwrap();
        assert_eq!(
            out,
            format!("{}{OURS}{}", &USER[..at], &USER[at..]),
            "{out}"
        );
        // And the CLI's own parser would read it: a plain TOML parse of the result.
        let doc = parse(&out).unwrap();
        assert_eq!(
            doc["model_providers"]["codex-vault"]["auth"]["command"].as_str(),
            Some("/usr/bin/cat")
        );
        assert_eq!(doc["model"].as_str(), Some("gpt-5.4"));
    }

    #[test]
    fn make_default_sets_model_provider_among_the_top_level_keys() {
        let out = connect(USER, true);
        let doc = parse(&out).unwrap();
        assert_eq!(
            top_string(&doc, MODEL_PROVIDER).as_deref(),
            Some(PROVIDER_ID)
        );
        let line = out.find("model_provider = \"codex-vault\"\n").unwrap();
        assert!(
            line < out.find("[tui]").unwrap(),
            "before the first table:\n{out}"
        );
        // Without our two additions, the user's file, byte for byte.
        assert_eq!(
            out.replacen("model_provider = \"codex-vault\"\n", "", 1)
                .replacen(OURS, "", 1),
            USER
        );
    }

    #[test]
    fn connecting_again_updates_in_place_and_an_unchanged_block_writes_nothing() {
        let once = connect(USER, true);
        let mut doc = parse(&once).unwrap();
        let changed = write_block(&mut doc, "http://127.0.0.1:8417/v1", &cmd()).unwrap();
        assert!(!changed);
        assert!(!set_top(&mut doc, MODEL_PROVIDER, PROVIDER_ID));
        assert_eq!(doc.to_string(), once);
        // A new port: only base_url's line moves.
        assert!(write_block(&mut doc, "http://127.0.0.1:9000/v1", &cmd()).unwrap());
        assert_eq!(
            doc.to_string(),
            once.replace("127.0.0.1:8417", "127.0.0.1:9000")
        );
    }

    #[test]
    fn a_pasted_block_is_updated_and_its_conflicting_key_source_dropped() {
        let pasted = "model_provider = \"codex-vault\"\n\n[model_providers.codex-vault]\nname = \"Codex Vault\"\nbase_url = \"http://127.0.0.1:8417/v1\"  # mine\nwire_api = \"responses\"\nenv_key = \"CODEX_VAULT_KEY\"\nrequest_max_retries = 2\n";
        let mut doc = parse(pasted).unwrap();
        write_block(&mut doc, "http://127.0.0.1:9001/v1", &cmd()).unwrap();
        let out = doc.to_string();
        assert!(
            out.contains("base_url = \"http://127.0.0.1:9001/v1\"  # mine\n"),
            "{out}"
        );
        assert!(!out.contains("env_key"), "{out}");
        assert!(
            out.contains("request_max_retries = 2"),
            "the user's own key stays: {out}"
        );
        // Removing ours puts the pasted one back as it was.
        let original = parse(pasted).unwrap();
        assert!(remove_block(&mut doc, Some(&original)));
        assert_eq!(doc.to_string(), pasted);
    }

    #[test]
    fn removing_the_block_after_the_user_edited_elsewhere_keeps_their_edit() {
        let connected = connect(USER, true);
        let edited = connected.replace("notifications = true", "notifications = false");
        let mut doc = parse(&edited).unwrap();
        assert!(remove_block(&mut doc, Some(&parse(USER).unwrap())));
        assert!(restore_top(&mut doc, MODEL_PROVIDER, PROVIDER_ID, None));
        assert_eq!(
            doc.to_string(),
            USER.replace("notifications = true", "notifications = false")
        );
    }

    #[test]
    fn model_provider_gets_its_previous_value_back_unless_the_user_changed_it() {
        let with = format!("model_provider = \"ollama\"  # local\n{USER}");
        let out = connect(&with, true);
        assert!(
            out.starts_with("model_provider = \"codex-vault\"  # local\n"),
            "{out}"
        );
        let mut doc = parse(&out).unwrap();
        assert!(restore_top(
            &mut doc,
            MODEL_PROVIDER,
            PROVIDER_ID,
            Some("ollama")
        ));
        remove_block(&mut doc, None);
        assert_eq!(doc.to_string(), with);
        // Changed by the user since: left alone.
        let mut doc = parse(&out.replace("\"codex-vault\"  # local", "\"openai\"")).unwrap();
        assert!(!restore_top(
            &mut doc,
            MODEL_PROVIDER,
            PROVIDER_ID,
            Some("ollama")
        ));
        assert_eq!(top_string(&doc, MODEL_PROVIDER).as_deref(), Some("openai"));
    }

    #[test]
    fn token_and_env_sources_replace_each_other() {
        let mut doc = parse(USER).unwrap();
        write_block(
            &mut doc,
            "http://127.0.0.1:1/v1",
            &KeySource::Token("cvk_x"),
        )
        .unwrap();
        let t = doc.to_string();
        assert!(t.contains("experimental_bearer_token = \"cvk_x\"") && !t.contains("auth ="));
        write_block(&mut doc, "http://127.0.0.1:1/v1", &KeySource::Env).unwrap();
        let t = doc.to_string();
        assert!(
            t.contains("env_key = \"CODEX_VAULT_KEY\"") && !t.contains("cvk_x"),
            "{t}"
        );
    }

    #[test]
    fn an_empty_file_gets_just_our_block() {
        let mut doc = parse("").unwrap();
        write_block(&mut doc, "http://127.0.0.1:8417/v1", &cmd()).unwrap();
        set_top(&mut doc, MODEL_PROVIDER, PROVIDER_ID);
        let out = doc.to_string();
        assert!(
            out.starts_with("model_provider = \"codex-vault\"\n[model_providers.codex-vault]\n"),
            "{out}"
        );
        let mut back = parse(&out).unwrap();
        remove_block(&mut back, None);
        restore_top(&mut back, MODEL_PROVIDER, PROVIDER_ID, None);
        assert_eq!(back.to_string(), "");
    }

    #[test]
    fn shapes_we_do_not_edit_are_refused() {
        let mut doc = parse("model_providers = { x = { name = \"x\" } }\n").unwrap();
        assert!(write_block(&mut doc, "u", &cmd()).is_err());
        let mut doc = parse("[model_providers]\ncodex-vault = \"nope\"\n").unwrap();
        assert!(write_block(&mut doc, "u", &cmd()).is_err());
    }

    #[test]
    fn malformed_toml_is_an_error_with_a_position() {
        let e = parse("model = \"gpt\nname = 1\n").unwrap_err();
        assert!(e.contains("line"), "{e}");
    }
}
