//! The restore rules over real stores (temp dirs, file key stores: each its own data key).

use super::*;
use crate::account::Status;
use crate::accounts::test_support::{auth_json, auth_json_for, service};

fn kinds(s: &Service, id: &str) -> Vec<String> {
    let mut k: Vec<String> = s
        .history(id, 50)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    k.reverse();
    k
}

#[test]
fn a_restore_into_a_new_store_adds_every_account_paused_with_its_history() {
    let (_a, from) = service();
    let id = from
        .import_text(
            &auth_json("ana@corp.com", "rt-1", "2026-01-01T00:00:00Z"),
            Some("work"),
        )
        .unwrap()
        .account()
        .id
        .clone();
    from.rename(&id, "day job").unwrap();
    from.store().set_setting("endpoint.port", "9123").unwrap();
    from.store().set_setting("connect.codex", "{}").unwrap();
    let (doc, left) = from.backup_doc().unwrap();
    assert_eq!(left, 0);
    assert!(
        !doc.settings.contains_key("connect.codex"),
        "a machine's own setting travelled"
    );

    let (_b, to) = service();
    let report = to.restore(&doc).unwrap();
    assert_eq!(report.items.len(), 1);
    let item = &report.items[0];
    assert_eq!(item.action, RestoreAction::Added);
    assert_eq!(item.account.label, "day job");
    assert_eq!(item.account.id, id, "the backup's id is kept");
    assert_eq!(item.account.status, Status::Disabled);
    assert!(item.account.restored_at.is_some());
    assert_eq!(report.settings_applied, ["endpoint.port"]);
    assert_eq!(
        to.store().setting("endpoint.port").unwrap().as_deref(),
        Some("9123")
    );
    assert_eq!(kinds(&to, &id), ["imported", "renamed", "restored"]);
    // Sealed again under the new store's key: the tokens open there.
    let secrets = to.store().secrets(&id).unwrap().unwrap();
    let rt = to
        .vault()
        .open(&id, Field::RefreshToken, &secrets.refresh_token)
        .unwrap();
    assert_eq!(rt.expose(), "rt-1");

    // "Enable" is not a confirmation; the confirmation is.
    let e = to.set_disabled(&id, false).unwrap_err();
    assert_eq!(e.code(), "restore_unconfirmed");
    let v = to.confirm_restored("day job").unwrap();
    assert_eq!(v.status, Status::Healthy);
    assert!(v.restored_at.is_none());
    assert_eq!(
        kinds(&to, &id).last().map(String::as_str),
        Some("restore_confirmed")
    );
}

#[test]
fn a_held_account_keeps_newer_tokens_and_takes_newer_ones_paused() {
    let (_a, from) = service();
    from.import_text(
        &auth_json("ana@corp.com", "rt-old", "2026-01-01T00:00:00Z"),
        None,
    )
    .unwrap();
    let (old_backup, _) = from.backup_doc().unwrap();

    // The store moved on (a newer sign-in): the older backup changes nothing.
    let held = from
        .import_text(
            &auth_json("ana@corp.com", "rt-new", "2026-02-01T00:00:00Z"),
            None,
        )
        .unwrap()
        .account()
        .clone();
    let report = from.restore(&old_backup).unwrap();
    assert_eq!(report.items[0].action, RestoreAction::KeptNewer);
    let after = from.view(&held.id).unwrap();
    assert_eq!(after.status, Status::Healthy);
    assert!(after.restored_at.is_none());
    let s = from.store().secrets(&held.id).unwrap().unwrap();
    assert_eq!(s.refresh_fingerprint, Secret::new("rt-new").fingerprint());

    // The same backup over a store holding an older copy: replaced, paused.
    let (_b, older) = service();
    older
        .import_text(
            &auth_json("ana@corp.com", "rt-older", "2025-06-01T00:00:00Z"),
            None,
        )
        .unwrap();
    let report = older.restore(&old_backup).unwrap();
    assert_eq!(report.items[0].action, RestoreAction::Replaced);
    let a = &report.items[0].account;
    assert_eq!(a.status, Status::Disabled);
    let s = older.store().secrets(&a.id).unwrap().unwrap();
    assert_eq!(s.refresh_fingerprint, Secret::new("rt-old").fingerprint());
}

#[test]
fn a_label_taken_by_another_account_gets_a_suffix_the_report_names() {
    let (_a, from) = service();
    from.import_text(
        &auth_json("ana@corp.com", "rt-1", "2026-01-01T00:00:00Z"),
        Some("work"),
    )
    .unwrap();
    let (doc, _) = from.backup_doc().unwrap();
    let (_b, to) = service();
    to.import_text(
        &auth_json_for("acc-other", "bo@corp.com", "rt-9", "2026-01-01T00:00:00Z"),
        Some("work"),
    )
    .unwrap();
    let report = to.restore(&doc).unwrap();
    let item = &report.items[0];
    assert_eq!(item.account.label, "work-2");
    assert_eq!(item.renamed_from.as_deref(), Some("work"));
    assert!(report.lines()[0].contains("the label `work` is another account's here"));
}
