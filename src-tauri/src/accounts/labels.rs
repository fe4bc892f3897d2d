//! Account labels: what a valid one is, the default one an email gives, and the words that tell
//! the user how to rename (an import or a sign-in never renames).

use crate::account::has_control_chars;
use crate::accounts::ImportOutcome;
use crate::error::AppError;

pub const MAX_LABEL_CHARS: usize = 64;

/// After a sign-in with `--label asked`: why the account's label is not `asked`, if it is not.
pub fn label_note(asked: Option<&str>, outcome: &ImportOutcome) -> Option<String> {
    let asked = asked?;
    let label = &outcome.account().label;
    if label == asked {
        return None;
    }
    Some(match outcome {
        ImportOutcome::SignedIn { .. } => format!(
            "the label `{asked}` is another account's, so this one is called `{label}`; rename it with `codex-vault accounts rename {} <new label>` (or Rename on its card in the app)",
            shell_word(label)
        ),
        _ => format!(
            "this sign-in is account `{label}`, which keeps its label (a sign-in never renames an account); to call it `{asked}`: {}",
            rename_hint(label, asked)
        ),
    })
}

/// The command that renames `from` to `to`, each quoted for a POSIX shell when it needs it.
pub(crate) fn rename_hint(from: &str, to: &str) -> String {
    format!(
        "`codex-vault accounts rename {} {}` (or Rename on its card in the app)",
        shell_word(from),
        shell_word(to)
    )
}

fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn validate_label(label: &str) -> Result<(), AppError> {
    if label.trim().is_empty() {
        return Err(AppError::InvalidLabel("it is empty".into()));
    }
    if has_control_chars(label) {
        return Err(AppError::InvalidLabel(
            "it contains control characters".into(),
        ));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(AppError::InvalidLabel(format!(
            "it is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    Ok(())
}

/// `ana@corp.com` → `ana`: a readable default that the user can rename.
pub(crate) fn default_label(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    let cleaned: String = local
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        .take(MAX_LABEL_CHARS - 4)
        .collect();
    if cleaned.is_empty() {
        "account".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_labels() {
        assert_eq!(default_label("ana@corp.com"), "ana");
        assert_eq!(default_label("@x"), "account");
        assert_eq!(default_label("a b\u{1b}c@x"), "abc");
    }

    #[test]
    fn rename_hints_quote_for_the_shell() {
        assert_eq!(
            rename_hint("ana", "work"),
            "`codex-vault accounts rename ana work` (or Rename on its card in the app)"
        );
        assert!(rename_hint("ana", "day job").contains("rename ana 'day job'"));
        assert!(rename_hint("ana", "bo's").contains(r"'bo'\''s'"));
    }

    #[test]
    fn labels_validated() {
        assert!(validate_label("work").is_ok());
        assert!(validate_label("").is_err());
        assert!(validate_label("a\r\nX-Injected: 1").is_err());
        assert!(validate_label(&"x".repeat(65)).is_err());
    }
}
