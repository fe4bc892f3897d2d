//! What an import of an auth.json does, decided once: the preview shows it and the import acts on
//! it, so the two can never disagree. Pure: the caller reads what the vault holds and passes it in.

use crate::account::UnixMs;
use serde::Serialize;

/// What the vault holds for the file's ChatGPT account (same account id + user id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    pub label: &'a str,
    /// Our last rotation (or import) of this account.
    pub last_refresh_at: Option<UnixMs>,
    /// The file's refresh token is the one we hold as current: the file is a copy of our grant.
    pub same_grant: bool,
}

/// The decision. Only `Replace` writes tokens, and it is generation-guarded by the caller: a
/// refresh that commits meanwhile makes ours the newer grant, and the import keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportDecision {
    /// No such ChatGPT account held: a new account.
    Add,
    /// Held, and the file's tokens are newer and another grant: they replace ours.
    Replace,
    /// Held, and the file holds the very grant we hold: nothing to take from it.
    KeepSameGrant,
    /// Held with tokens at least as new as the file's (or the file says nothing about its age).
    KeepNewer,
    /// Held under another label than the one asked: refused before anything is written (an
    /// import is about tokens; renaming is its own, explicit act).
    WouldRename { held: String, asked: String },
}

/// What a preview shows: `add`, `update` (the file is newer), or `keep_newer`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum PreviewAction {
    Add,
    Update,
    KeepNewer,
}

/// Decides an import of a file whose `last_refresh` is `file_last_refresh`, asked to carry
/// `asked_label` (None: no label asked, as in every preview).
pub fn decide_import(
    held: Option<Held<'_>>,
    file_last_refresh: Option<UnixMs>,
    asked_label: Option<&str>,
) -> ImportDecision {
    let Some(held) = held else {
        return ImportDecision::Add;
    };
    if let Some(asked) = asked_label.filter(|l| *l != held.label) {
        return ImportDecision::WouldRename {
            held: held.label.to_string(),
            asked: asked.to_string(),
        };
    }
    let newer = match (file_last_refresh, held.last_refresh_at) {
        (Some(file), Some(ours)) => file > ours,
        (Some(_), None) => true,
        (None, _) => false,
    };
    match (newer, held.same_grant) {
        (_, true) => ImportDecision::KeepSameGrant,
        (true, false) => ImportDecision::Replace,
        (false, false) => ImportDecision::KeepNewer,
    }
}

impl ImportDecision {
    /// The preview's word for it. A rename never reaches a preview (it asks no label); shown as
    /// what the import would do without one, it would keep the held tokens or replace them.
    pub fn preview_action(&self) -> PreviewAction {
        match self {
            ImportDecision::Add => PreviewAction::Add,
            ImportDecision::Replace => PreviewAction::Update,
            ImportDecision::KeepSameGrant
            | ImportDecision::KeepNewer
            | ImportDecision::WouldRename { .. } => PreviewAction::KeepNewer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ImportDecision::*;

    /// Held (None: nothing), the file's last refresh, the label asked; then what is decided and
    /// what the preview shows.
    type Case = (
        Option<Held<'static>>,
        Option<UnixMs>,
        Option<&'static str>,
        ImportDecision,
        PreviewAction,
    );

    fn held(last: Option<UnixMs>, same_grant: bool) -> Option<Held<'static>> {
        Some(Held {
            label: "work",
            last_refresh_at: last,
            same_grant,
        })
    }

    #[test]
    fn the_table() {
        let rename = || WouldRename {
            held: "work".into(),
            asked: "side".into(),
        };
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Nothing held: added, whatever the file's age or the label asked.
            (None, None, None, Add, PreviewAction::Add),
            (None, Some(5), Some("side"), Add, PreviewAction::Add),
            // Held, the file newer and another grant: replaced.
            (held(Some(1), false), Some(2), None, Replace, PreviewAction::Update),
            (held(None, false), Some(2), None, Replace, PreviewAction::Update),
            (held(Some(1), false), Some(2), Some("work"), Replace, PreviewAction::Update),
            // Held, the file not newer: ours kept.
            (held(Some(2), false), Some(2), None, KeepNewer, PreviewAction::KeepNewer),
            (held(Some(3), false), Some(2), None, KeepNewer, PreviewAction::KeepNewer),
            (held(Some(3), false), None, None, KeepNewer, PreviewAction::KeepNewer),
            (held(None, false), None, None, KeepNewer, PreviewAction::KeepNewer),
            // Held, the same grant: a copy of ours, however new the file says it is.
            (held(Some(1), true), Some(2), None, KeepSameGrant, PreviewAction::KeepNewer),
            (held(Some(3), true), Some(2), None, KeepSameGrant, PreviewAction::KeepNewer),
            // Another label asked for a held account: refused before any token is looked at.
            (held(Some(1), false), Some(2), Some("side"), rename(), PreviewAction::KeepNewer),
            (held(Some(3), true), None, Some("side"), rename(), PreviewAction::KeepNewer),
        ];
        for (i, (h, file, asked, want, preview)) in cases.iter().enumerate() {
            let got = decide_import(*h, *file, *asked);
            assert_eq!(&got, want, "case {i}");
            assert_eq!(got.preview_action(), *preview, "case {i}");
        }
    }
}
