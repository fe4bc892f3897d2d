//! Every error code Codex Vault sends: the CLI's `[code]`, the Tauri commands' `{code, message}`,
//! the endpoint's `{"error":{"code"}}` and the UI (generated into `ui/src/bindings/ErrorCode.ts`).
//! The strings are a contract: users script against them and the UI switches on them, so a
//! variant may be added but its string never changes. Upstream's own codes (OAuth
//! `refresh_token_reused`, the backend's `usage_limit_reached` answers passed on) are not ours and
//! stay strings where they are carried.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident => $s:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
        #[serde(rename_all = "snake_case")]
        #[ts(export)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $s,)*
                }
            }
        }
    };
}

codes! {
    // Anything without a code of its own; the UI's "no backend here".
    Unknown => "unknown",
    BackendUnavailable => "backend_unavailable",
    // Configuration and arguments.
    Config => "config",
    NoDataDir => "no_data_dir",
    InvalidLabel => "invalid_label",
    ImportWouldRename => "import_would_rename",
    // The store.
    DataDir => "data_dir",
    StoreTooNew => "store_too_new",
    StoreNotADatabase => "store_not_a_database",
    StoreCorrupt => "store_corrupt",
    StoreBackupFailed => "store_backup_failed",
    StoreBusy => "store_busy",
    StoreError => "store_error",
    StoreConflict => "store_conflict",
    StoreOpen => "store_open",
    SetAsideNotOffered => "set_aside_not_offered",
    AccountNotFound => "account_not_found",
    AccountAmbiguous => "account_ambiguous",
    LabelTaken => "label_taken",
    // The vault (data key).
    KeychainUnavailable => "keychain_unavailable",
    KeyMissing => "key_missing",
    KeyMismatch => "key_mismatch",
    KeyCorrupt => "key_corrupt",
    KeyFile => "key_file",
    SecretTampered => "secret_tampered",
    VaultError => "vault_error",
    // Reading an auth.json and its id_token.
    AuthJsonUnreadable => "auth_json_unreadable",
    AuthJsonTooLarge => "auth_json_too_large",
    AuthJsonEmpty => "auth_json_empty",
    AuthJsonNotJson => "auth_json_not_json",
    AuthJsonApiKeyOnly => "auth_json_api_key_only",
    AuthJsonNoTokens => "auth_json_no_tokens",
    AuthJsonMissingField => "auth_json_missing_field",
    AuthJsonWrongType => "auth_json_wrong_type",
    AuthJsonEmptyRefreshToken => "auth_json_empty_refresh_token",
    AuthJsonControlChars => "auth_json_control_chars",
    AuthJsonAccountMismatch => "auth_json_account_mismatch",
    JwtMalformed => "jwt_malformed",
    JwtMissingClaim => "jwt_missing_claim",
    JwtWrongClaimType => "jwt_wrong_claim_type",
    // Browser sign-in.
    LoginPortsBusy => "login_ports_busy",
    LoginBind => "login_bind",
    LoginCancelled => "login_cancelled",
    LoginStateMismatch => "login_state_mismatch",
    MissingCodexEntitlement => "missing_codex_entitlement",
    LoginDenied => "login_denied",
    LoginNoCode => "login_no_code",
    LoginExchangeFailed => "login_exchange_failed",
    LoginTimedOut => "login_timed_out",
    // Pasted-callback and device-code sign-in.
    LoginPasteInvalid => "login_paste_invalid",
    LoginDeviceUnavailable => "login_device_unavailable",
    LoginDeviceExpired => "login_device_expired",
    LoginDeviceDenied => "login_device_denied",
    LoginDeviceFailed => "login_device_failed",
    LoginNetwork => "login_network",
    // Refreshing and using an account.
    AccountTerminal => "account_terminal",
    AccountDisabled => "account_disabled",
    RefreshTransient => "refresh_transient",
    CodexWritebackIo => "codex_writeback_io",
    DetachFailed => "detach_failed",
    // The endpoint: its listener, and its HTTP answers.
    PortInUse => "port_in_use",
    EndpointBind => "endpoint_bind",
    EndpointUnavailable => "endpoint_unavailable",
    HostNotAllowed => "host_not_allowed",
    OriginNotAllowed => "origin_not_allowed",
    InvalidLocalKey => "invalid_local_key",
    WebsocketNotServed => "websocket_not_served",
    RequestTooLarge => "request_too_large",
    RequestBodyInvalid => "request_body_invalid",
    RequestBodyTimeout => "request_body_timeout",
    TooManyKeylessRequests => "too_many_keyless_requests",
    NotFound => "not_found",
    UpstreamUnreachable => "upstream_unreachable",
    NoUsableAccount => "no_usable_account",
    UnknownAccount => "unknown_account",
    AccountUnusable => "account_unusable",
    UsageLimitReached => "usage_limit_reached",
    // Codex's own quota routes and reset credits.
    QuotaCallerUnknown => "quota_caller_unknown",
    QuotaAccountMismatch => "quota_account_mismatch",
    ChatgptRouteNotServed => "chatgpt_route_not_served",
    ResetNotForwarded => "reset_not_forwarded",
    NoResetCredit => "no_reset_credit",
    RedeemUnconfirmed => "redeem_unconfirmed",
    RedeemRefused => "redeem_refused",
    ConfirmationRequired => "confirmation_required",
    // The request log (`activity.db`).
    ActivityLog => "activity_log",
    ActivityTooNew => "activity_too_new",
    // Bulk import.
    BulkNoPaths => "bulk_no_paths",
    BulkUnreadable => "bulk_unreadable",
    PeerFormatUnknown => "peer_format_unknown",
    PeerFormatNoSignIn => "peer_format_no_sign_in",
    // `connect codex` / `disconnect codex` (the Codex CLI's config.toml).
    CodexHomeMissing => "codex_home_missing",
    CodexConfigInvalid => "codex_config_invalid",
    CodexConfigUnsupported => "codex_config_unsupported",
    CodexConfigIo => "codex_config_io",
    CodexNotConnected => "codex_not_connected",
    // Encrypted backup and restore.
    BackupWrongPassphrase => "backup_wrong_passphrase",
    BackupNotABackup => "backup_not_a_backup",
    BackupTooNew => "backup_too_new",
    BackupIo => "backup_io",
    BackupPassphrase => "backup_passphrase",
    RestoreUnconfirmed => "restore_unconfirmed",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<ErrorCode> for &str {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use std::collections::HashSet;

    #[test]
    fn every_code_serialises_to_its_string_and_back() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::from(code.as_str()), "{code:?}");
            let back: ErrorCode = serde_json::from_value(json).unwrap();
            assert_eq!(back, code);
            assert_eq!(code.to_string(), code.as_str());
        }
    }

    #[test]
    fn codes_are_unique_snake_case_and_all_listed() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "`{s}` is used twice");
            assert!(
                !s.is_empty()
                    && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !s.starts_with('_')
                    && !s.ends_with('_'),
                "`{s}` is not snake_case"
            );
        }
        // `ALL` comes from the same list as the enum; a code missing from it would fail here.
        assert_eq!(seen.len(), ErrorCode::ALL.len());
        assert!(ErrorCode::ALL.contains(&ErrorCode::UsageLimitReached));
    }
}
