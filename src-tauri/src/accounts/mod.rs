//! The use cases every face (CLI, desktop commands, `serve`) calls, one module per job:
//! - `service`: open the vault (store + data key), list, view, remove, the local API key;
//! - `decision`: what an import does (add, replace, keep, refuse a rename), one pure function the
//!   import and its preview both ask;
//! - `import`: import an auth.json, sign in from the browser;
//! - `preview`: what an import would do, before anything is written; pasted imports;
//! - `bulk`: many files and folders in the formats other tools write, previewed, then imported;
//! - `ownership`: who keeps an imported Codex CLI sign-in (broker or detach), shared grants;
//! - `ops`: rename, enable/disable, history;
//! - `labels`: valid and default labels, rename hints;
//! - `restore`: the encrypted backup of the whole vault, and restoring it (paused until confirmed);
//! - `set_aside`: the way out of a store the keychain's key cannot open.
//!
//! SQL stays in `store/`: these functions call store methods, never a connection.

pub mod activity;
pub mod bulk;
pub mod decision;
pub mod import;
pub mod labels;
pub mod ops;
pub mod ownership;
pub mod preview;
pub mod redeem;
pub mod restore;
pub mod service;
pub mod set_aside;
#[cfg(test)]
mod test_support;

pub use decision::{decide_import, Held, ImportDecision, PreviewAction};
pub use import::ImportOutcome;
pub use labels::{label_note, validate_label, MAX_LABEL_CHARS};
pub use ops::*;
pub use preview::{CodexCliPreview, ExistingAccount, ImportPreview};
pub use redeem::RedeemOutcome;
pub use service::*;
