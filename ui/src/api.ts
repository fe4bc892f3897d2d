// The one door between the UI and the Rust core. Every Tauri command the UI uses is named here;
// components import these functions and never call `invoke` themselves. The shapes are generated
// from the Rust types (ts-rs, `ui/src/bindings/`, checked by `make bindings`): never written by hand.
import { Channel, invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import type { About } from './bindings/About';
import type { ActivityPage } from './bindings/ActivityPage';
import type { AccountsChanged } from './bindings/AccountsChanged';
import type { AccountView } from './bindings/AccountView';
import type { BackupSummary } from './bindings/BackupSummary';
import type { BrokerEnvState } from './bindings/BrokerEnvState';
import type { BulkItem } from './bindings/BulkItem';
import type { BulkPlan } from './bindings/BulkPlan';
import type { BulkProgress } from './bindings/BulkProgress';
import type { CodexCliPreview } from './bindings/CodexCliPreview';
import type { ConnectionView } from './bindings/ConnectionView';
import type { ConnectReport } from './bindings/ConnectReport';
import type { ConnectState } from './bindings/ConnectState';
import type { DeviceProgressEvent } from './bindings/DeviceProgressEvent';
import type { DeviceSignInStarted } from './bindings/DeviceSignInStarted';
import type { DisconnectReport } from './bindings/DisconnectReport';
import type { RestartHint } from './bindings/RestartHint';
import type { Diagnostics } from './bindings/Diagnostics';
import type { EndpointStatus } from './bindings/EndpointStatus';
import type { ErrorBody } from './bindings/ErrorBody';
import type { ErrorCode } from './bindings/ErrorCode';
import type { EventView } from './bindings/EventView';
import type { FailureView } from './bindings/FailureView';
import type { Filter } from './bindings/Filter';
import type { GroupBy } from './bindings/GroupBy';
import type { HeldRotationView } from './bindings/HeldRotationView';
import type { Imported } from './bindings/Imported';
import type { ImportOutcome } from './bindings/ImportOutcome';
import type { ImportPreview } from './bindings/ImportPreview';
import type { LastErrorView } from './bindings/LastErrorView';
import type { LogLine } from './bindings/LogLine';
import type { LogPage } from './bindings/LogPage';
import type { LogQuery } from './bindings/LogQuery';
import type { NoticeKind } from './bindings/NoticeKind';
import type { NoticeSwitch } from './bindings/NoticeSwitch';
import type { OwnedImported } from './bindings/OwnedImported';
import type { Ownership } from './bindings/Ownership';
import type { OwnershipReport } from './bindings/OwnershipReport';
import type { Prefs } from './bindings/Prefs';
import type { PreviewAction } from './bindings/PreviewAction';
import type { QuitHeld } from './bindings/QuitHeld';
import type { RedeemOutcome } from './bindings/RedeemOutcome';
import type { RequestRow } from './bindings/RequestRow';
import type { RestoreAction } from './bindings/RestoreAction';
import type { RestoreItem } from './bindings/RestoreItem';
import type { RestoreReport } from './bindings/RestoreReport';
import type { SignInFinished } from './bindings/SignInFinished';
import type { SignInStarted } from './bindings/SignInStarted';
import type { StartupProblem } from './bindings/StartupProblem';
import type { Status } from './bindings/Status';
import type { StoreInfo } from './bindings/StoreInfo';
import type { Theme } from './bindings/Theme';
import type { Totals } from './bindings/Totals';
import type { UsagePoint } from './bindings/UsagePoint';
import type { UsageSnapshot } from './bindings/UsageSnapshot';
import type { UsageWindow } from './bindings/UsageWindow';

export type {
  About,
  ActivityPage,
  Filter,
  GroupBy,
  RequestRow,
  Totals,
  UsagePoint,
  AccountsChanged,
  BackupSummary,
  BrokerEnvState,
  BulkItem,
  BulkPlan,
  BulkProgress,
  CodexCliPreview,
  ConnectionView,
  ConnectReport,
  ConnectState,
  DeviceProgressEvent,
  DeviceSignInStarted,
  DisconnectReport,
  RestartHint,
  Diagnostics,
  EndpointStatus,
  ErrorCode,
  Imported,
  ImportOutcome,
  ImportPreview,
  LogLine,
  LogPage,
  LogQuery,
  NoticeKind,
  NoticeSwitch,
  OwnedImported,
  Ownership,
  OwnershipReport,
  Prefs,
  PreviewAction,
  QuitHeld,
  RestoreAction,
  RestoreItem,
  RestoreReport,
  SignInFinished,
  SignInStarted,
  StartupProblem,
  StoreInfo,
  Theme,
  UsageWindow,
};

// The UI's names for the core's view types.
export type AccountStatus = Status;
/** One account, the same fields as `codex-vault accounts list --json`. Times are RFC 3339. */
export type Account = AccountView;
export type Failure = FailureView;
export type LastError = LastErrorView;
export type Usage = UsageSnapshot;
export type HeldRotation = HeldRotationView;
export type AccountEvent = EventView;
export type ImportOutcomeKind = ImportOutcome['outcome'];
/** Every error the core returns is `{code, message}`: `code` is stable snake_case to switch on. */
export type ApiError = ErrorBody;

/** Code for a value thrown without a code of its own (a plain string, an `Error`, anything else). */
export const UNKNOWN_CODE: ErrorCode = 'unknown';
/** Code for "there is no Tauri backend here" (the page opened in a plain browser, e.g. `npm run dev`). */
export const BACKEND_UNAVAILABLE_CODE: ErrorCode = 'backend_unavailable';

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
    return { code: thrown.code as ErrorCode, message: thrown.message };
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

/** Event names, the same strings as src-tauri/src/desktop/events.rs. */
export const EVENTS = {
  accountsChanged: 'accounts://changed',
  signInFinished: 'signin://finished',
  signInDevice: 'signin://device',
  endpointChanged: 'endpoint://changed',
  quitHeld: 'quit://held',
} as const;

/** What importing this pasted auth.json would do. Writes nothing. */
export function previewAuthJson(text: string): Promise<ImportPreview> {
  return call<ImportPreview>('preview_auth_json', { text });
}

/** Imports a pasted auth.json; an empty label lets the core pick one. */
export function importAuthJson(text: string, label?: string | null): Promise<Imported> {
  return call<Imported>('import_auth_json', { text, label: label || null });
}

/** Looks for the Codex CLI's auth.json and previews it. */
export function previewCodexCliAuth(): Promise<CodexCliPreview> {
  return call<CodexCliPreview>('preview_codex_cli_auth');
}

/** Imports the Codex CLI's auth.json and settles who refreshes it from now on. */
export function importCodexCliAuth(ownership: Ownership, label?: string | null): Promise<OwnedImported> {
  return call<OwnedImported>('import_codex_cli_auth', { ownership, label: label || null });
}

/** The native chooser: several sign-in files, or one folder. `null` when the user closed it. */
export function pickImportPaths(folder: boolean): Promise<string[] | null> {
  return call<string[] | null>('pick_import_paths', { folder });
}

/** What importing these files and folders would do, a row per sign-in. Writes nothing. */
export function bulkImportPreview(paths: string[]): Promise<BulkPlan> {
  return call<BulkPlan>('bulk_import_preview', { paths });
}

/** Imports them, one account at a time; `onProgress` hears each step. */
export function bulkImport(
  paths: string[],
  onProgress: (p: BulkProgress) => void,
  ownership: Ownership | null = null,
): Promise<BulkPlan> {
  const progress = new Channel<BulkProgress>();
  progress.onmessage = onProgress;
  return call<BulkPlan>('bulk_import', { paths, ownership, progress });
}

/** The native chooser for a backup file: where to write one (`save`) or which to restore. `null`: closed. */
export function pickBackupPath(save: boolean): Promise<string | null> {
  return call<string | null>('pick_backup_path', { save });
}

/** Seals every account, its history and the settings into `path` with the passphrase (typed twice). */
export function writeBackup(path: string, passphrase: string, again: string): Promise<BackupSummary> {
  return call<BackupSummary>('write_backup', { path, passphrase, again });
}

/** Opens the backup and restores it; restored accounts stay paused until confirmed. A wrong
 *  passphrase (`backup_wrong_passphrase`) changes nothing. */
export function restoreBackup(path: string, passphrase: string): Promise<RestoreReport> {
  return call<RestoreReport>('restore_backup', { path, passphrase });
}

/** The user says the machine the backup came from no longer refreshes this account: it may run. */
export function confirmRestored(id: string): Promise<Account> {
  return call<Account>('confirm_restored', { id });
}

/** Starts a browser sign-in; its end arrives as `signin://finished`. */
export function signInStart(label?: string | null): Promise<SignInStarted> {
  return call<SignInStarted>('sign_in_start', { label: label || null });
}

/** Starts a device-code sign-in: the code and URL at once; progress arrives as `signin://device`,
 *  the end as `signin://finished`. */
export function deviceSignInStart(label?: string | null): Promise<DeviceSignInStarted> {
  return call<DeviceSignInStarted>('device_sign_in_start', { label: label || null });
}

/** Finishes the waiting browser sign-in with the callback URL pasted from another machine.
 *  Rejects (`login_state_mismatch`, `login_paste_invalid`) and keeps waiting when it does not fit. */
export function signInPaste(url: string): Promise<void> {
  return call<void>('sign_in_paste', { url });
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

/** Spends one reset credit of the account (only after the card's confirmation). */
export function redeemReset(id: string): Promise<RedeemOutcome> {
  return call<RedeemOutcome>('redeem_reset', { id });
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

/** Calls `handler` after each poll of a device-code sign-in. */
export function onDeviceProgress(handler: (payload: DeviceProgressEvent) => void): Promise<Unlisten> {
  return subscribe(EVENTS.signInDevice, handler);
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

// ---- Connect Codex (its config.toml points at the endpoint) -------------------------------------

/** The connected Codex homes, whether a running Codex needs a restart, the broker variable's state. */
export function codexConnections(): Promise<ConnectState> {
  return call<ConnectState>('codex_connections');
}

/** Connects a Codex home (empty: `$CODEX_HOME`, else `~/.codex`); `makeDefault` also sets `model_provider`. */
export function codexConnect(
  codexHome: string | null,
  makeDefault: boolean,
  statusRoutes = false,
  broker = false,
): Promise<ConnectReport> {
  return call<ConnectReport>('codex_connect', { codexHome, makeDefault, statusRoutes, broker });
}

/** Undoes a connect: the file restored byte for byte when nothing else changed it, else only our part removed. */
export function codexDisconnect(codexHome: string): Promise<DisconnectReport> {
  return call<DisconnectReport>('codex_disconnect', { codexHome });
}

// ---- Preferences and start-up ---------------------------------------------------------------------

export function getPrefs(): Promise<Prefs> {
  return call<Prefs>('get_prefs');
}

/** Saves theme and start-minimised (the window geometry is the app's own to keep). */
export function setPrefs(prefs: Pick<Prefs, 'theme' | 'start_minimized'>): Promise<Prefs> {
  return call<Prefs>('set_prefs', { prefs });
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

export function about(): Promise<About> {
  return call<About>('about');
}

// ---- Activity ----------------------------------------------------------------------------------------

/** A page of the request log, newest first; `filter.before_id` asks for the page after a row. */
export function activityPage(filter: Filter, limit?: number): Promise<ActivityPage> {
  return call<ActivityPage>('activity_page', { filter, limit: limit ?? null });
}

/** Requests and tokens summed per account, model, or hour/day bucket (then `sub` is the account). */
export function activityTotals(filter: Filter, by: GroupBy): Promise<Totals[]> {
  return call<Totals[]>('activity_totals', { filter, by });
}

/** Every account's 5 h / weekly used-% samples since `sinceMs`, oldest first. */
export function usageHistory(sinceMs: number): Promise<UsagePoint[]> {
  return call<UsagePoint[]>('usage_history', { sinceMs });
}

/** Writes the filtered table as CSV into Downloads; resolves with the file's path. */
export function exportActivityCsv(filter: Filter): Promise<string> {
  return call<string>('export_activity_csv', { filter });
}

/** The diagnostics report (`codex-vault diagnostics`): no token, key or email. */
export function diagnostics(): Promise<Diagnostics> {
  return call<Diagnostics>('diagnostics');
}

/** Which desktop notifications are on (store settings `notify.*`; on unless switched off). */
export function noticeSwitches(): Promise<NoticeSwitch[]> {
  return call<NoticeSwitch[]>('notice_switches');
}

export function setNoticeSwitch(kind: NoticeKind, on: boolean): Promise<void> {
  return call<void>('set_notice_switch', { kind, on });
}

/** One page of the newest log file: back from the end (`before`) or following it (`after`). */
export function readLogs(query: LogQuery): Promise<LogPage> {
  return call<LogPage>('read_logs', { query });
}
