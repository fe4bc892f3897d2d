//! The fake OpenAI's own tests: one binary, one module per area. Run one area with a name filter,
//! e.g. `cargo test -p codex-vault-testkit --test it oauth::`.

mod common;

mod admin_api;
mod real_codex_cli;

mod backend {
    mod continuity;
    mod faults;
    mod quota;
    mod responses;
    mod streaming;
}

mod oauth {
    mod code;
    mod refresh;
}
