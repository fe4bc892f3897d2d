// The one door between the UI and the Rust core. Every Tauri command the UI uses is named here, with
// the shape the core serialises; components import these functions and never call `invoke` themselves.
import { invoke } from '@tauri-apps/api/core';

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
