//! Codex Vault's integration tests: one binary, one module per area. Run one area with a name
//! filter, e.g. `cargo test -p codex-vault --test it refresh::` (inside `scripts/keyring-session.sh`).
//!
//! Every test here shares this process. A test that needs a process of its own (a process-wide
//! counter, an environment variable read once, a changed session bus) re-runs itself as a child
//! of this binary: `common::in_own_process`.

mod common;

mod broker {
    mod basics;
    mod codex_cli;
    mod import;
    mod race;
    mod writeback;
    mod writeback_codex_cli;
}

mod endpoint {
    mod activity;
    mod chat;
    mod chat_sdk;
    mod codex_cli;
    mod connect_codex;
    mod continuity;
    mod continuity_codex_cli;
    mod control;
    mod quota;
    mod registry;
    mod routes;
    mod routing;
    mod settings;
}

mod hardening {
    mod crash;
    mod diagnostics;
    mod endpoint;
    mod inputs;
    mod keychain;
    mod keyless;
    mod leaks;
    mod locks;
    mod soak;
}

mod keychain {
    mod daemon_restart;
    mod once;
    mod retry;
}

mod login {
    mod default_ports;
    mod device;
    mod flow;
    mod paste;
}

mod refresh {
    mod durability;
    mod engine;
    mod held;
    mod process;
    mod scheduler;
    mod shutdown;
    mod token_client;
}

mod store {
    mod backup;
    mod bad_input;
    mod bulk_import;
    mod cli;
    mod integrity;
    mod locks;
}
