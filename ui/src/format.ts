// Pure presentation logic: everything a component shows that is more than a field, so it can be tested
// without a DOM. Times are RFC 3339 strings from the core; `now`, `locale` and `timeZone` are parameters
// so tests are deterministic and the UI passes nothing.
import type { Account, AccountStatus, ErrorCode, Failure, ImportPreview, Usage, UsageWindow } from './api';

export interface FormatOptions {
  /** The current time; defaults to `new Date()`. */
  now?: Date;
  /** BCP 47 locale for clock times; defaults to the user's. */
  locale?: string;
  /** IANA zone for clock times; defaults to the user's. */
  timeZone?: string;
}

export type Tone = 'ok' | 'busy' | 'warn' | 'muted' | 'bad';

/** A status readable without colour: an icon and a word carry it, the tone only reinforces it. */
export interface StatusView {
  icon: string;
  word: string;
  tone: Tone;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function parse(iso: string | null | undefined): Date | null {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

function sameLocalDay(a: Date, b: Date, timeZone?: string): boolean {
  const day = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
  return day.format(a) === day.format(b);
}

/**
 * An RFC 3339 time as a short local clock time: "14:20" today (or "2:20 PM", per locale), "Mon 14:20" within the week around now,
 * "3 Dec 14:20" otherwise. Returns "" for a missing or unparseable time.
 */
export function shortTime(iso: string | null | undefined, opts: FormatOptions = {}): string {
  const date = parse(iso);
  if (!date) return '';
  const now = opts.now ?? new Date();
  const { locale, timeZone } = opts;
  const clock = new Intl.DateTimeFormat(locale, { timeZone, hour: 'numeric', minute: '2-digit' }).format(date);
  if (sameLocalDay(date, now, timeZone)) return clock;
  if (Math.abs(date.getTime() - now.getTime()) < 6 * DAY) {
    const weekday = new Intl.DateTimeFormat(locale, { timeZone, weekday: 'short' }).format(date);
    return `${weekday} ${clock}`;
  }
  const day = new Intl.DateTimeFormat(locale, { timeZone, day: 'numeric', month: 'short' }).format(date);
  return `${day} ${clock}`;
}

/** A duration as its two largest units: "9d 23h", "5h", "3h 12m", "2m". Under a minute: "<1m". */
export function compactDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < MINUTE) return '<1m';
  if (abs < HOUR) return `${Math.floor(abs / MINUTE)}m`;
  if (abs < DAY) {
    const h = Math.floor(abs / HOUR);
    const m = Math.floor((abs % HOUR) / MINUTE);
    return m ? `${h}h ${m}m` : `${h}h`;
  }
  const d = Math.floor(abs / DAY);
  const h = Math.floor((abs % DAY) / HOUR);
  return h ? `${d}d ${h}h` : `${d}d`;
}

/** "in 9d 23h" for a future time, "2m ago" for a past one, "just now" within a minute back. */
export function relativeTime(iso: string | null | undefined, opts: FormatOptions = {}): string {
  const date = parse(iso);
  if (!date) return '';
  const diff = date.getTime() - (opts.now ?? new Date()).getTime();
  if (diff >= 0) return `in ${compactDuration(diff)}`;
  if (-diff < MINUTE) return 'just now';
  return `${compactDuration(diff)} ago`;
}

/** The access token's remaining life: "9d 23h", "expired 3m ago", or "unknown". */
export function tokenExpiry(iso: string | null | undefined, opts: FormatOptions = {}): string {
  const date = parse(iso);
  if (!date) return 'unknown';
  const diff = date.getTime() - (opts.now ?? new Date()).getTime();
  if (diff > 0) return compactDuration(diff);
  return `expired ${relativeTime(iso, opts)}`;
}

const STATUS: Record<AccountStatus, StatusView> = {
  healthy: { icon: '●', word: 'Healthy', tone: 'ok' },
  refreshing: { icon: '↻', word: 'Refreshing', tone: 'busy' },
  rate_limited: { icon: '◔', word: 'Rate-limited', tone: 'warn' },
  disabled: { icon: '○', word: 'Disabled', tone: 'muted' },
  terminal: { icon: '▲', word: 'Needs sign-in', tone: 'bad' },
};

/** Status → icon + word + tone. A rate limit with a known end reads "Rate-limited until 14:20". */
export function statusView(
  account: Pick<Account, 'status' | 'rate_limited_until'> & Partial<Pick<Account, 'restored_at'>>,
  opts: FormatOptions = {},
): StatusView {
  // A restored account is disabled until confirmed; the badge says why, so it is not taken for one the user switched off.
  if (account.status === 'disabled' && account.restored_at) return { icon: '○', word: 'Restored — paused', tone: 'warn' };
  const base = STATUS[account.status] ?? { icon: '?', word: String(account.status), tone: 'muted' };
  if (account.status === 'rate_limited') {
    const until = shortTime(account.rate_limited_until, opts);
    if (until) return { ...base, word: `${base.word} until ${until}` };
  }
  return { ...base };
}

/** Sentences for the OAuth/terminal codes the core records; anything else shows the upstream message. */
const REASONS: Record<string, string> = {
  refresh_token_reused: 'Refresh token was used by another app',
  refresh_token_invalidated: 'Session ended or revoked',
  refresh_token_expired: 'Refresh token expired',
  app_session_terminated: 'ChatGPT ended this sign-in session',
  rotation_lost_in_crash: 'A refreshed token was lost when Codex Vault stopped mid-refresh',
  unauthorized: 'ChatGPT no longer accepts this sign-in',
  invalid_grant: 'The sign-in is no longer valid',
  invalid_refresh_token: 'Refresh token is not valid',
  invalid_client: 'ChatGPT rejected the app identity',
  unauthorized_client: 'ChatGPT rejected the app identity',
  access_denied: 'Access was denied by ChatGPT',
};

/** What a person should read first when an account went terminal. */
export function failureReason(failure: Pick<Failure, 'code' | 'message'>): string {
  const known = REASONS[failure.code];
  if (known) return known;
  const message = failure.message.trim();
  if (message) return message;
  return failure.code ? `Sign-in failed (${failure.code})` : 'Sign-in failed';
}

/** The small print for searchers: "refresh_token_reused, HTTP 401, 12:03". */
export function failureDetail(failure: Failure, opts: FormatOptions = {}): string {
  const parts = [failure.code];
  if (failure.http_status !== null && failure.http_status !== undefined) parts.push(`HTTP ${failure.http_status}`);
  const at = shortTime(failure.at, opts);
  if (at) parts.push(at);
  return parts.filter(Boolean).join(', ');
}

/** What to do about it. */
export function failureAdvice(failure: Pick<Failure, 'code'>): string {
  if (failure.code === 'refresh_token_reused') {
    return 'Sign in again, and let Codex Vault be the only app that refreshes this account.';
  }
  return 'Sign in again to restore this account.';
}

export interface Summary {
  total: number;
  healthy: number;
  attention: number;
  disabled: number;
}

/** Healthy (usable now) vs needing attention (terminal, rate-limited, or carrying a transient error). */
export function summarize(accounts: ReadonlyArray<Pick<Account, 'status' | 'last_error'>>): Summary {
  const s: Summary = { total: accounts.length, healthy: 0, attention: 0, disabled: 0 };
  for (const a of accounts) {
    if (a.status === 'disabled') s.disabled += 1;
    else if (a.status === 'terminal' || a.status === 'rate_limited' || a.last_error) s.attention += 1;
    else s.healthy += 1;
  }
  return s;
}

/** "3 healthy · 1 needs attention", "2 healthy · 2 need attention · 1 disabled", "No accounts yet". */
export function summaryLine(summary: Summary): string {
  if (summary.total === 0) return 'No accounts yet';
  const parts = [`${summary.healthy} healthy`];
  if (summary.attention) parts.push(`${summary.attention} ${summary.attention === 1 ? 'needs' : 'need'} attention`);
  if (summary.disabled) parts.push(`${summary.disabled} disabled`);
  return parts.join(' · ');
}

/** A usage window's name: 300 min → "5 h", 10080 → "week", 1440 → "day". */
export function windowLabel(minutes: number | null | undefined): string {
  if (!minutes || minutes <= 0) return 'usage';
  if (minutes === 10_080) return 'week';
  if (minutes === 43_200) return 'month';
  if (minutes === 1_440) return 'day';
  if (minutes % 1_440 === 0) return `${minutes / 1_440} d`;
  if (minutes % 60 === 0) return `${minutes / 60} h`;
  return `${minutes} min`;
}

/** The note under the usage bars when the last usage poll was refused: the numbers may be old. */
export function usageNote(usage: Pick<Usage, 'stale' | 'updated_at'> | null | undefined, opts: FormatOptions = {}): string | null {
  if (!usage?.stale) return null;
  const since = relativeTime(usage.updated_at, opts);
  return since ? `Usage may be old (last read ${since}).` : 'Usage may be old.';
}

/** A usage window as displayed: percent clamped to 0–100 and rounded, reset as a short time. */
export function usageLane(window: UsageWindow, opts: FormatOptions = {}) {
  const percent = Math.round(Math.min(100, Math.max(0, window.used_percent)));
  return {
    label: windowLabel(window.window_minutes),
    percent,
    resets: shortTime(window.resets_at, opts),
    tone: (percent >= 90 ? 'bad' : percent >= 70 ? 'warn' : 'ok') as Tone,
  };
}

/** "ana@corp.com · Team": the identity line under the label; either part may be missing. */
export function identityLine(account: Pick<Account, 'email' | 'plan'>): string {
  return [account.email, account.plan ? capitalize(account.plan) : null].filter(Boolean).join(' · ');
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/** The core's label rule (src-tauri service::validate_label), checked as the user types. null = fine. */
export const MAX_LABEL_CHARS = 64;
export function labelProblem(label: string): string | null {
  if (!label.trim()) return 'A label cannot be empty.';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(label)) return 'A label cannot contain control characters.';
  if ([...label].length > MAX_LABEL_CHARS) return `A label can be at most ${MAX_LABEL_CHARS} characters.`;
  return null;
}

/** What importing a previewed file will do, before the user confirms. */
export function previewActionText(preview: Pick<ImportPreview, 'action' | 'existing'>): string {
  const label = preview.existing?.label;
  switch (preview.action) {
    case 'add':
      return 'This adds a new account.';
    case 'update':
      return `This ChatGPT account is already held as "${label}": importing updates that account with these newer tokens.`;
    case 'keep_newer':
      return `This ChatGPT account is already held as "${label}" with tokens at least as new: importing keeps the newer tokens.`;
    default:
      return '';
  }
}

/** Words for the history's event kinds; an unknown kind shows as it is. */
const EVENT_WORDS: Record<string, string> = {
  imported: 'Imported',
  imported_again: 'Imported again',
  signed_in: 'Signed in',
  refreshed: 'Refreshed',
  race_recovered: 'Recovered a refresh race',
  failed: 'Needs sign-in',
  refresh_failed: 'Refresh failed (will retry)',
  rate_limited: 'Rate-limited',
  renamed: 'Renamed',
  disabled: 'Disabled',
  enabled: 'Enabled',
  removed: 'Removed',
  verified: 'Verified',
  conversation_moved: 'Conversation moved here',
  context_not_moved: 'Earlier context could not move',
};

export function eventWord(kind: string): string {
  return EVENT_WORDS[kind] ?? kind.replace(/_/g, ' ');
}

/** Why a typed port cannot be used, or null: whole numbers from 1024 to 65535 only. */
export function portProblem(text: string): string | null {
  const t = text.trim();
  if (!/^\d+$/.test(t)) return 'Enter a port number, like 8417.';
  const n = Number(t);
  if (n < 1024 || n > 65535) return 'Choose a port from 1024 to 65535.';
  return null;
}

export interface ServedRow {
  id: string;
  label: string;
  count: number;
}

/** Requests served per account, busiest first; an account removed since shows by its id. */
export function servedRows(served: Record<string, number>, accounts: ReadonlyArray<Pick<Account, 'id' | 'label'>>): ServedRow[] {
  const labels = new Map(accounts.map((a) => [a.id, a.label]));
  return Object.entries(served)
    .filter(([, count]) => count > 0)
    .map(([id, count]) => ({ id, label: labels.get(id) ?? `removed account ${id.slice(0, 8)}`, count }))
    .sort((a, b) => b.count - a.count || a.label.localeCompare(b.label));
}

/** What a person can do about a store that did not open, by error code. */
export function startupAdvice(code: ErrorCode): string {
  switch (code) {
    case 'keychain_unavailable':
      return 'Codex Vault keeps its key in the OS keychain. On Linux install a Secret Service (sudo apt install gnome-keyring), sign in to a desktop session, and unlock the "Login" keyring if it is locked (Passwords and Keys); then try again.';
    case 'key_missing':
      return 'The keychain no longer holds this store\'s key. Restore it from a keyring backup and try again — or set the store aside and start fresh (your old data is kept, never deleted).';
    case 'key_mismatch':
    case 'key_corrupt':
      return 'The key in the keychain does not open this store. Restore the right key and try again, or set the store aside and start fresh (nothing is deleted).';
    case 'store_too_new':
      return 'This store was written by a newer Codex Vault. Install the newer version; nothing was changed.';
    case 'store_not_a_database':
      return 'The store file is damaged or not Codex Vault\'s. Set it aside and start fresh (it is kept, never deleted).';
    case 'store_corrupt':
      return 'The store failed its integrity check at start, so Codex Vault does not serve from it. If the message names a copy from before the last upgrade, quit Codex Vault and put that copy in place of the store; otherwise set the store aside and start fresh (it is kept, never deleted) and sign in again.';
    case 'store_busy':
      return 'Another program holds the store locked. Close it (or wait a moment) and try again.';
    default:
      return 'Try again; if it keeps failing, run `codex-vault accounts list` in a terminal for details.';
  }
}
