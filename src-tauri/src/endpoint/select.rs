//! Which account answers a request. Pure: accounts + request facts + selector memory in,
//! an account id out. Rules (README.md § What works today): skip terminal, disabled and
//! rate-limited accounts; a pin (`x-codex-vault-account`) wins; a conversation stays on its
//! account while usable; otherwise the most headroom, round robin on ties.

use crate::account::usage::UsageSnapshot;
use crate::account::{Account, Status, UnixMs};
use std::collections::{HashMap, HashSet, VecDeque};

/// Conversations remembered for affinity (oldest forgotten first).
const AFFINITY_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum SelectError {
    UnknownPin(String),
    PinnedUnusable {
        label: String,
        why: String,
    },
    /// Every usable account is rate-limited; the earliest reset (Unix ms).
    AllRateLimited {
        earliest_reset: Option<UnixMs>,
    },
    NoUsableAccount,
}

#[derive(Default)]
pub struct Selector {
    affinity: HashMap<String, String>,
    order: VecDeque<String>,
    round_robin: usize,
    /// Rate limits learnt from 429s (account id → until), ahead of the store's copy.
    pub rate_limited: HashMap<String, UnixMs>,
    /// Accounts whose refresh is backing off (a failing token endpoint): still usable, but
    /// the others are preferred while any of them can answer. Set before each selection.
    pub backing_off: HashSet<String>,
}

pub struct Request<'a> {
    pub pin: Option<&'a str>,
    pub conversation: Option<&'a str>,
    /// Accounts already tried for this request (failed over).
    pub excluded: &'a HashSet<String>,
}

fn limited_until(a: &Account, sel: &Selector, now: UnixMs) -> Option<UnixMs> {
    let mem = sel.rate_limited.get(&a.id).copied().filter(|t| *t > now);
    let stored = (a.status == Status::RateLimited)
        .then_some(a.rate_limited_until)
        .flatten()
        .filter(|t| *t > now);
    mem.max(stored)
}

fn unusable(a: &Account, sel: &Selector, now: UnixMs) -> Option<String> {
    if a.disabled {
        return Some("it is disabled".into());
    }
    if a.status == Status::Terminal {
        return Some(format!(
            "it needs sign-in ({})",
            a.failure.as_ref().map_or("unknown", |f| f.code.as_str())
        ));
    }
    limited_until(a, sel, now).map(|t| {
        format!(
            "it is rate-limited until {}",
            crate::account::ms_to_rfc3339(t)
        )
    })
}

impl Selector {
    pub fn select<'a>(
        &mut self,
        accounts: &'a [Account],
        usage: &HashMap<String, UsageSnapshot>,
        req: &Request<'_>,
        now: UnixMs,
    ) -> Result<&'a Account, SelectError> {
        if let Some(pin) = req.pin {
            let found = accounts.iter().find(|a| {
                a.id == pin
                    || a.label == pin
                    || a.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(pin))
            });
            let Some(a) = found else {
                return Err(SelectError::UnknownPin(pin.to_string()));
            };
            return match unusable(a, self, now) {
                Some(why) => Err(SelectError::PinnedUnusable {
                    label: a.label.clone(),
                    why,
                }),
                None if req.excluded.contains(&a.id) => Err(SelectError::PinnedUnusable {
                    label: a.label.clone(),
                    why: "it failed for this request".into(),
                }),
                None => Ok(a),
            };
        }
        if let Some(conv) = req.conversation {
            // A known conversation stays on its account while usable: checked on that account
            // alone, before the pass over all of them.
            if let Some(id) = self.affinity.get(conv) {
                let found = accounts.iter().find(|a| &a.id == id);
                if let Some(a) = found
                    .filter(|a| !req.excluded.contains(&a.id) && unusable(a, self, now).is_none())
                {
                    return Ok(a);
                }
            }
        }
        // The one pass whose cost grows with the number of accounts (`make bench` measures it):
        // one usage lookup per usable account, no per-request allocation beyond this vector.
        let headroom = |a: &Account| usage.get(&a.id).map_or(100.0, UsageSnapshot::headroom);
        let mut scored: Vec<(&Account, f64)> = accounts
            .iter()
            .filter(|a| !req.excluded.contains(&a.id) && unusable(a, self, now).is_none())
            .map(|a| (a, headroom(a)))
            .collect();
        if !self.backing_off.is_empty()
            && scored
                .iter()
                .any(|(a, _)| !self.backing_off.contains(&a.id))
        {
            scored.retain(|(a, _)| !self.backing_off.contains(&a.id));
        }
        if scored.is_empty() {
            let earliest = accounts
                .iter()
                .filter(|a| !a.disabled && a.status != Status::Terminal)
                .filter_map(|a| limited_until(a, self, now))
                .min();
            return Err(match earliest {
                Some(t) => SelectError::AllRateLimited {
                    earliest_reset: Some(t),
                },
                None => SelectError::NoUsableAccount,
            });
        }
        let best = scored.iter().map(|(_, h)| *h).fold(f64::MIN, f64::max);
        // Within half a percent counts as a tie: headers report rounded figures.
        let is_tied = |h: f64| best - h <= 0.5;
        let tied = scored.iter().filter(|(_, h)| is_tied(*h)).count();
        // `tied` ≥ 1 (the best is tied with itself), so the n-th tied account exists.
        let Some((account, _)) = scored
            .iter()
            .filter(|(_, h)| is_tied(*h))
            .nth(self.round_robin % tied.max(1))
        else {
            return Err(SelectError::NoUsableAccount);
        };
        let chosen: &'a Account = account;
        self.round_robin = self.round_robin.wrapping_add(1);
        if let Some(conv) = req.conversation {
            self.remember(conv, &chosen.id);
        }
        Ok(chosen)
    }

    /// Keeps `conversation` on `account_id` from now on (affinity read back after a restart; a
    /// compacted conversation kept on the account holding its summary).
    pub fn stick(&mut self, conversation: &str, account_id: &str) {
        self.remember(conversation, account_id);
    }

    fn remember(&mut self, conversation: &str, account_id: &str) {
        if self
            .affinity
            .insert(conversation.to_string(), account_id.to_string())
            .is_none()
        {
            self.order.push_back(conversation.to_string());
            if self.order.len() > AFFINITY_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.affinity.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(id: &str) -> Account {
        Account {
            id: id.into(),
            label: format!("l-{id}"),
            email: Some(format!("{id}@x.com")),
            chatgpt_account_id: id.into(),
            chatgpt_user_id: "u".into(),
            plan: None,
            fedramp: false,
            status: Status::Healthy,
            failure: None,
            last_error: None,
            access_expires_at: None,
            access_issued_at: None,
            last_refresh_at: None,
            rate_limited_until: None,
            generation: 0,
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

    fn pick(sel: &mut Selector, accts: &[Account], conv: Option<&str>) -> String {
        let none = HashSet::new();
        sel.select(
            accts,
            &HashMap::new(),
            &Request {
                pin: None,
                conversation: conv,
                excluded: &none,
            },
            0,
        )
        .unwrap()
        .id
        .clone()
    }

    #[test]
    fn conversations_stick_and_new_ones_spread() {
        let accts = vec![acct("a"), acct("b"), acct("c")];
        let mut sel = Selector::default();
        let first = pick(&mut sel, &accts, Some("conv-1"));
        for _ in 0..20 {
            assert_eq!(pick(&mut sel, &accts, Some("conv-1")), first);
        }
        let spread: HashSet<String> = (0..20)
            .map(|i| pick(&mut sel, &accts, Some(&format!("k{i}"))))
            .collect();
        assert!(spread.len() >= 2);
    }

    #[test]
    fn skips_dead_disabled_and_limited_and_reports_earliest_reset() {
        let mut dead = acct("dead");
        dead.status = Status::Terminal;
        let mut off = acct("off");
        off.disabled = true;
        let mut lim = acct("lim");
        lim.status = Status::RateLimited;
        lim.rate_limited_until = Some(5_000);
        let ok = acct("ok");
        let mut sel = Selector::default();
        let all = vec![dead.clone(), off.clone(), lim.clone(), ok];
        for _ in 0..5 {
            assert_eq!(pick(&mut sel, &all, None), "ok");
        }
        sel.rate_limited.insert("x".into(), 9_000);
        let mut x = acct("x");
        x.status = Status::Healthy;
        let none = HashSet::new();
        let all = [dead, off, lim, x];
        let r = sel.select(
            &all,
            &HashMap::new(),
            &Request {
                pin: None,
                conversation: None,
                excluded: &none,
            },
            0,
        );
        assert_eq!(
            r.map(|a| a.id.as_str()),
            Err(SelectError::AllRateLimited {
                earliest_reset: Some(5_000)
            })
        );
    }

    #[test]
    fn most_headroom_wins() {
        let accts = vec![acct("a"), acct("b")];
        let mut usage = HashMap::new();
        usage.insert(
            "a".to_string(),
            UsageSnapshot {
                quota: None,
                primary: Some(crate::account::usage::UsageWindow {
                    used_percent: 90.0,
                    window_minutes: Some(300),
                    resets_at: None,
                }),
                secondary: None,
                updated_at: String::new(),
                stale: false,
            },
        );
        let mut sel = Selector::default();
        let none = HashSet::new();
        for _ in 0..4 {
            let r = sel
                .select(
                    &accts,
                    &usage,
                    &Request {
                        pin: None,
                        conversation: None,
                        excluded: &none,
                    },
                    0,
                )
                .unwrap();
            assert_eq!(r.id, "b");
        }
    }

    #[test]
    fn accounts_backing_off_are_passed_over_while_another_can_answer() {
        let accts = vec![acct("a"), acct("b"), acct("c")];
        let mut sel = Selector::default();
        sel.backing_off.insert("a".into());
        for _ in 0..6 {
            assert_ne!(pick(&mut sel, &accts, None), "a");
        }
        sel.backing_off.extend(["b".to_string(), "c".to_string()]);
        assert!(
            ["a", "b", "c"].contains(&pick(&mut sel, &accts, None).as_str()),
            "all backing off: still answered"
        );
        sel.backing_off.clear();
        let spread: HashSet<String> = (0..6).map(|_| pick(&mut sel, &accts, None)).collect();
        assert_eq!(
            spread.len(),
            3,
            "back in the rotation once its backoff ends"
        );
    }

    #[test]
    fn pins_by_id_label_or_email() {
        let accts = vec![acct("a"), acct("b")];
        let mut sel = Selector::default();
        let none = HashSet::new();
        for pin in ["b", "l-b", "B@X.COM"] {
            let r = sel.select(
                &accts,
                &HashMap::new(),
                &Request {
                    pin: Some(pin),
                    conversation: None,
                    excluded: &none,
                },
                0,
            );
            assert_eq!(r.map(|a| a.id.as_str()), Ok("b"));
        }
        let r = sel.select(
            &accts,
            &HashMap::new(),
            &Request {
                pin: Some("zzz"),
                conversation: None,
                excluded: &none,
            },
            0,
        );
        assert_eq!(
            r.map(|a| a.id.as_str()),
            Err(SelectError::UnknownPin("zzz".into()))
        );
    }
}
