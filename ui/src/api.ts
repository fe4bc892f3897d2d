// The one door between the UI and the Rust core. Every Tauri command the UI uses is named here, with
// the shape the core serialises; components import these functions and never call `invoke` themselves.
import { invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';

export type AccountStatus = 'healthy' | 'refreshing' | 'rate_limited' | 'disabled' | 'terminal';

/** Why an account went terminal: the upstream OAuth code, its (redacted) message, when. */
export interface Failure {
  code: string;
  message: string;
  http_status: number | null;
  at: string;
}

/** The last transient error (network, 5xx, 429 from the token endpoint): a warning, not a failure. */
export interface LastError {
  message: string;
  at: string;
}

export interface UsageWindow {
  used_percent: number;
  window_minutes: number | null;
  resets_at: string | null;
}

export interface Usage {
  primary: UsageWindow | null;
  secondary: UsageWindow | null;
  updated_at: string;
}

/** One account, the same fields as `codex-vault accounts list --json`. Times are RFC 3339. */
export interface Account {
  id: string;
  label: string;
  email: string | null;
  chatgpt_account_id: string;
  plan: string | null;
  status: AccountStatus;
  failure: Failure | null;
  last_error: LastError | null;
  access_expires_at: string | null;
  last_refresh_at: string | null;
  rate_limited_until: string | null;
  usage: Usage | null;
  created_at: string;
  /**
   * Another holder has this same sign-in (a live Codex `auth.json`, or another copy of the grant):
   * two holders of one sign-in log each other out — broker it or sign in separately.
   */
  shared_grant?: boolean;
  /** Where the other holder is (a file path, or which copy), when `shared_grant`. */
  shared_grant_where?: string | null;
  /**
   * A live Codex Vault process holds this account's newest sign-in in memory only (saving it
   * failed: a full disk): it keeps using it and retries saving it.
   */
  held_rotation?: HeldRotation | null;
  /** A Codex CLI (or another holder) keeps this sign-in and refreshes through the broker. */
  brokered?: boolean;
  /** When a brokered holder last came through the broker (RFC 3339), or null if not yet. */
  broker_holder_seen_at?: string | null;
}

export interface HeldRotation {
  pid: number;
  since: string;
  attempts: number;
  last_error: string;
  /** "a new sign-in is held in memory; free disk space" */
  message: string;
}

export interface StoreInfo {
  data_dir: string;
  key_store: 'keychain' | 'file';
  /** Set when the store runs in a weaker mode (e.g. the opt-in file key); shown as a banner. */
  warning: string | null;
}

/** Every error the core returns is `{code, message}`: `code` is stable snake_case to switch on. */
export interface ApiError {
  code: string;
  message: string;
}

/** Code for a value thrown without a code of its own (a plain string, an `Error`, anything else). */
export const UNKNOWN_CODE = 'unknown';
/** Code for "there is no Tauri backend here" (the page opened in a plain browser, e.g. `npm run dev`). */
export const BACKEND_UNAVAILABLE_CODE = 'backend_unavailable';

export function isApiError(value: unknown): value is ApiError {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/**
 * Turns anything `invoke` may reject with into an `ApiError`, so the UI switches on `code` and never
 * parses message strings. The core rejects with `{code, message}`; Tauri itself may reject with a plain
 * string (e.g. an unknown command), and a bug may throw an `Error`: both become code `unknown`.
 */
export function toApiError(thrown: unknown): ApiError {
  if (isApiError(thrown)) {
    return { code: thrown.code, message: thrown.message };
  }
  if (typeof thrown === 'string') {
    return { code: UNKNOWN_CODE, message: thrown || 'Unknown error' };
  }
  if (thrown instanceof Error) {
    return { code: UNKNOWN_CODE, message: thrown.message || thrown.name || 'Unknown error' };
  }
  if (typeof thrown === 'object' && thrown !== null) {
    const message = (thrown as { message?: unknown }).message;
    if (typeof message === 'string' && message) {
      return { code: UNKNOWN_CODE, message };
    }
    try {
      return { code: UNKNOWN_CODE, message: JSON.stringify(thrown) };
    } catch {
      return { code: UNKNOWN_CODE, message: 'Unknown error' };
    }
  }
  if (thrown === undefined || thrown === null) {
    return { code: UNKNOWN_CODE, message: 'Unknown error' };
  }
  return { code: UNKNOWN_CODE, message: String(thrown) };
}

function backendPresent(): boolean {
  // Tauri injects `__TAURI_INTERNALS__` before any page script runs; `invoke` needs it.
  return typeof (globalThis as { __TAURI_INTERNALS__?: unknown }).__TAURI_INTERNALS__ === 'object';
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  if (!backendPresent()) {
    throw {
      code: BACKEND_UNAVAILABLE_CODE,
      message: 'The Codex Vault core is not reachable: this page must run inside the desktop app.',
    } satisfies ApiError;
  }
  try {
    return await invoke<T>(command, args);
  } catch (thrown) {
    throw toApiError(thrown);
  }
}

/** All accounts, in the core's display order. Rejects with an `ApiError`. */
export function listAccounts(): Promise<Account[]> {
  return call<Account[]>('list_accounts');
}

/** Where the data lives and how its key is kept. Rejects with an `ApiError`. */
export function storeInfo(): Promise<StoreInfo> {
  return call<StoreInfo>('store_info');
}

// ---- Adding accounts -------------------------------------------------------------------------------

/** What importing an auth.json would do: `add` a new account, `update` a held one (the file is newer), or `keep_newer`. */
export type PreviewAction = 'add' | 'update' | 'keep_newer';

/** An auth.json's identity and what importing it would do, before anything is written. Never token text. */
export interface ImportPreview {
  email: string;
  plan: string | null;
  chatgpt_account_id: string;
  /** The held account this sign-in already is (same ChatGPT account + user), if any. */
  existing: { id: string; label: string } | null;
  action: PreviewAction;
  access_expires_at: string | null;
  last_refresh: string | null;
}

/** The Codex CLI's auth.json: where it is looked for, whether it is there, and its preview. */
export interface CodexCliPreview {
  path: string | null;
  found: boolean;
  preview: ImportPreview | null;
}

export type ImportOutcomeKind = 'added' | 'updated' | 'kept_newer' | 'signed_in' | 'signed_in_again';

/** What an import or sign-in did, and the account as it is now. */
export interface ImportOutcome {
  outcome: ImportOutcomeKind;
  account: Account;
}

/** One line of an account's history (`account_events`), newest first. */
export interface AccountEvent {
  id: number;
  at: string;
  kind: string;
  detail: string | null;
}

export interface SignInStarted {
  /** Names this sign-in in `signin://finished`. */
  flow: number;
  url: string;
  port: number;
}

/** Payload of `signin://finished`. */
export interface SignInFinished {
  flow: number;
  ok: boolean;
  message: string;
  code: string | null;
  account_id: string | null;
}

/** Payload of `accounts://changed`: one account, or `null` for possibly all. */
export interface AccountsChanged {
  account_id: string | null;
}

/** Event names, the same strings as src-tauri/src/desktop/events.rs. */
export const EVENTS = {
  accountsChanged: 'accounts://changed',
  signInFinished: 'signin://finished',
  endpointChanged: 'endpoint://changed',
  quitHeld: 'quit://held',
} as const;

/** Payload of `quit://held`: Quit waits for the user while a new sign-in is held in memory only. */
export interface QuitHeld {
  account_ids: string[];
  message: string;
}

/** What importing this pasted auth.json would do. Writes nothing. */
export function previewAuthJson(text: string): Promise<ImportPreview> {
  return call<ImportPreview>('preview_auth_json', { text });
}

/** Imports a pasted auth.json; an empty label lets the core pick one. */
export function importAuthJson(text: string, label?: string | null): Promise<ImportOutcome> {
  return call<ImportOutcome>('import_auth_json', { text, label: label || null });
}

/** Looks for the Codex CLI's auth.json and previews it. */
export function previewCodexCliAuth(): Promise<CodexCliPreview> {
  return call<CodexCliPreview>('preview_codex_cli_auth');
}

/**
 * Who refreshes an imported Codex CLI sign-in from now on: `broker` — the CLI keeps its auth.json
 * and refreshes through Codex Vault (one env line); `detach` — the CLI's auth.json is moved aside.
 */
export type Ownership = 'broker' | 'detach';

/** What was done about the Codex CLI's own copy of an imported sign-in. */
export interface OwnershipReport {
  mode: Ownership;
  path: string;
  /** Where the CLI's auth.json went (detach). */
  backup: string | null;
  /** The line to add to the CLI's environment (broker). */
  env: string | null;
  warning: string;
}

export interface OwnedImport extends ImportOutcome {
  codex_cli: OwnershipReport | null;
}

/** Imports the Codex CLI's auth.json and settles who refreshes it from now on. */
export function importCodexCliAuth(ownership: Ownership, label?: string | null): Promise<OwnedImport> {
  return call<OwnedImport>('import_codex_cli_auth', { ownership, label: label || null });
}

/** Starts a browser sign-in; its end arrives as `signin://finished`. */
export function signInStart(label?: string | null): Promise<SignInStarted> {
  return call<SignInStarted>('sign_in_start', { label: label || null });
}

/** Cancels the pending sign-in; resolves false when none was pending. */
export function signInCancel(): Promise<boolean> {
  return call<boolean>('sign_in_cancel');
}

// ---- Account actions -------------------------------------------------------------------------------

export function renameAccount(id: string, label: string): Promise<Account> {
  return call<Account>('rename_account', { id, label });
}

export function setAccountDisabled(id: string, disabled: boolean): Promise<Account> {
  return call<Account>('set_account_disabled', { id, disabled });
}

export function removeAccount(id: string): Promise<Account> {
  return call<Account>('remove_account', { id });
}

/** The account's events, newest first. */
export function accountHistory(id: string, limit = 50): Promise<AccountEvent[]> {
  return call<AccountEvent[]>('account_history', { id, limit });
}

/** Refreshes the account's tokens now. */
export function refreshAccount(id: string): Promise<void> {
  return call<void>('refresh_account', { id });
}

// ---- Live events -----------------------------------------------------------------------------------

type Unlisten = () => void;

async function subscribe<T>(name: string, handler: (payload: T) => void): Promise<Unlisten> {
  // Outside the desktop app there is nothing to listen to; the caller needs no special case.
  if (!backendPresent()) return () => {};
  return listen<T>(name, (event) => handler(event.payload));
}

/** Calls `handler` whenever accounts change (an import, an action, a sign-in, a refresh). */
export function onAccountsChanged(handler: (payload: AccountsChanged) => void): Promise<Unlisten> {
  return subscribe(EVENTS.accountsChanged, handler);
}

/** Calls `handler` when a browser sign-in ends (signed in, failed, or cancelled). */
export function onSignInFinished(handler: (payload: SignInFinished) => void): Promise<Unlisten> {
  return subscribe(EVENTS.signInFinished, handler);
}

/** Calls `handler` when Quit needs the user's yes: a new sign-in is held in memory only. */
export function onQuitHeld(handler: (payload: QuitHeld) => void): Promise<Unlisten> {
  return subscribe(EVENTS.quitHeld, handler);
}

/** Quits after refreshes in flight are saved; `force` also gives up sign-ins held in memory. */
export function quitApp(force: boolean): Promise<void> {
  return call<void>('quit_app', { force });
}

/** Calls `handler` when the endpoint starts, stops, moves, gets a new key or serves more requests. */
export function onEndpointChanged(handler: (payload: EndpointStatus) => void): Promise<Unlisten> {
  return subscribe(EVENTS.endpointChanged, handler);
}

// ---- Endpoint ----------------------------------------------------------------------------------------

/** The loopback endpoint as the core sees it. Never the key itself: `key_hint` is a fingerprint. */
export interface EndpointStatus {
  /** A listener of this app is accepting connections right now. */
  running: boolean;
  /** The live port when running, else the one a start would use. */
  port: number;
  configured_port: number;
  /** The base URL tools use, e.g. `http://127.0.0.1:8417/v1`. */
  url: string;
  key_hint: string;
  /** The Codex CLI `config.toml` block. */
  config_toml: string;
  env_hint: string;
  /** `export CODEX_REFRESH_TOKEN_URL_OVERRIDE=…` (a whole shell line): the Codex CLI then refreshes its sign-in through Codex Vault. */
  refresh_override_env: string;
  /** Why the last start failed (`port_in_use` names the holder), until a start succeeds. */
  error: ApiError | null;
  /** Another process (e.g. `codex-vault serve`) runs an endpoint on this store. */
  other_pid: number | null;
  /** Requests answered per account id since this listener started. */
  served: Record<string, number>;
  /** Conversations each account (by id) served in the last 30 minutes. */
  conversations: Record<string, number>;
}

export function endpointStatus(): Promise<EndpointStatus> {
  return call<EndpointStatus>('endpoint_status');
}

export function endpointStart(): Promise<EndpointStatus> {
  return call<EndpointStatus>('endpoint_start');
}

export function endpointStop(): Promise<EndpointStatus> {
  return call<EndpointStatus>('endpoint_stop');
}

/** Moves the endpoint to `port` (binding the new port first: a taken port changes nothing). */
export function endpointSetPort(port: number): Promise<EndpointStatus> {
  return call<EndpointStatus>('endpoint_set_port', { port });
}

/** The local API key itself, for an explicit Reveal or Copy. */
export function endpointKey(): Promise<string> {
  return call<string>('endpoint_key');
}

/** Replaces the local API key; tools need the new one from now on. */
export function endpointRotateKey(): Promise<EndpointStatus> {
  return call<EndpointStatus>('endpoint_rotate_key');
}

// ---- Preferences and start-up ---------------------------------------------------------------------

export type Theme = 'system' | 'light' | 'dark';

/** UI preferences (tauri-plugin-store `prefs.json`; never a secret). */
export interface Prefs {
  theme: Theme;
  start_minimized: boolean;
}

export function getPrefs(): Promise<Prefs> {
  return call<Prefs>('get_prefs');
}

export function setPrefs(prefs: Prefs): Promise<Prefs> {
  return call<Prefs>('set_prefs', { prefs });
}

/** Why the store did not open, and whether setting it aside is offered. `null`: it opened. */
export interface StartupProblem {
  code: string;
  message: string;
  can_set_aside: boolean;
  data_dir: string | null;
}

export function startupProblem(): Promise<StartupProblem | null> {
  return call<StartupProblem | null>('startup_problem');
}

/** Moves the unreadable store aside (never deletes it); the app restarts with a fresh one. */
export function setAsideStore(): Promise<string> {
  return call<string>('set_aside_store');
}

/** Starts the app again (after unlocking the keychain, say). */
export function restartApp(): Promise<void> {
  return call<void>('restart_app');
}

/** Whether the desktop session starts Codex Vault at sign-in (in the tray). Off by default. */
export function getAutostart(): Promise<boolean> {
  return call<boolean>('get_autostart');
}

export function setAutostart(enabled: boolean): Promise<boolean> {
  return call<boolean>('set_autostart', { enabled });
}

export interface About {
  name: string;
  version: string;
  data_dir: string | null;
}

export function about(): Promise<About> {
  return call<About>('about');
}
