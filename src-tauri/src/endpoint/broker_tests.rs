//! The broker's decision rules (`decide_for`) in order, and reading the request body.

use super::*;

fn account(id: &str) -> BrokerAccount {
    BrokerAccount {
        account_id: id.into(),
        generation: 3,
        terminal: false,
        refresh_token: Vec::new(),
        previous_refresh_token: None,
        previous_refresh_fingerprint: None,
        rotated_at: Some(1_000),
    }
}

fn facts(a: &BrokerAccount) -> Facts<'_> {
    Facts {
        account: a,
        is_current: false,
        is_previous: false,
        holder_newest: false,
        origin: None,
        legacy_match: false,
    }
}

#[test]
fn the_rules_in_order() {
    let a = account("a");
    let now = 1_000 + 60_000;
    let later = 1_000 + PREVIOUS_GENERATION_WINDOW_MS + 1;
    let rank = |f: &Facts<'_>, t| decide_for(f, t);
    assert_eq!(rank(&facts(&a), now), Decision::Unknown);
    let current = Facts {
        is_current: true,
        ..facts(&a)
    };
    assert_eq!(
        rank(&current, now),
        Decision::Rotate {
            account_id: "a".into(),
            generation: 3
        }
    );
    // A detached backup's token is refused even while it is the current one.
    let detached = Facts {
        origin: Some(DigestOrigin::Detached),
        ..current
    };
    assert!(matches!(rank(&detached, now), Decision::Refuse { .. }));
    // A holder's newest is honoured at any age; the previous generation only inside the window
    // and never when only our own rotation ever had it.
    let holder = Facts {
        holder_newest: true,
        ..facts(&a)
    };
    assert!(matches!(rank(&holder, later), Decision::HandCurrent { .. }));
    let previous = Facts {
        is_previous: true,
        ..facts(&a)
    };
    assert!(matches!(rank(&previous, now), Decision::HandCurrent { .. }));
    assert!(matches!(rank(&previous, later), Decision::Refuse { .. }));
    let kept = Facts {
        origin: Some(DigestOrigin::Minted),
        ..previous
    };
    assert!(matches!(rank(&kept, now), Decision::Refuse { .. }));
    let handed = Facts {
        origin: Some(DigestOrigin::Handed),
        ..previous
    };
    assert!(matches!(rank(&handed, now), Decision::HandCurrent { .. }));
    // Older tokens known by digest or only by a legacy fingerprint: refused, never forwarded.
    for f in [
        Facts {
            origin: Some(DigestOrigin::Handed),
            ..facts(&a)
        },
        Facts {
            legacy_match: true,
            ..facts(&a)
        },
    ] {
        assert!(matches!(rank(&f, now), Decision::Refuse { .. }));
    }
}

#[test]
fn json_and_form_bodies() {
    let mut h = HeaderMap::new();
    let m = fields(
        &h,
        br#"{"grant_type":"refresh_token","refresh_token":"rt_x"}"#,
    )
    .unwrap();
    assert_eq!(field(&m, "refresh_token").unwrap().expose(), "rt_x");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let m = fields(&h, b"grant_type=refresh_token&refresh_token=rt_y%2B").unwrap();
    assert_eq!(field(&m, "refresh_token").unwrap().expose(), "rt_y+");
    assert!(fields(&HeaderMap::new(), b"[1]").is_none());
}
