import { describe, expect, it } from 'vitest';
import type { ErrorCode, Failure } from './api';
import {
  eventWord,
  usageNote,
  labelProblem,
  previewActionText,
  compactDuration,
  failureAdvice,
  failureDetail,
  failureReason,
  identityLine,
  relativeTime,
  shortTime,
  statusView,
  summarize,
  summaryLine,
  tokenExpiry,
  usageLane,
  windowLabel,
  portProblem,
  servedRows,
  startupAdvice,
} from './format';

// Wednesday 3 Dec 2025, 12:00 UTC. Clock times are pinned to UTC and en-GB (24 h).
const now = new Date('2025-12-03T12:00:00Z');
const opts = { now, locale: 'en-GB', timeZone: 'UTC' };

describe('statusView', () => {
  it('carries every status as icon + word, not colour alone', () => {
    expect(statusView({ status: 'healthy', rate_limited_until: null }, opts)).toEqual({ icon: '●', word: 'Healthy', tone: 'ok' });
    expect(statusView({ status: 'refreshing', rate_limited_until: null }, opts)).toEqual({ icon: '↻', word: 'Refreshing', tone: 'busy' });
    expect(statusView({ status: 'disabled', rate_limited_until: null }, opts)).toEqual({ icon: '○', word: 'Disabled', tone: 'muted' });
    expect(statusView({ status: 'terminal', rate_limited_until: null }, opts)).toEqual({ icon: '▲', word: 'Needs sign-in', tone: 'bad' });
  });

  it('says until when a rate limit ends', () => {
    expect(statusView({ status: 'rate_limited', rate_limited_until: '2025-12-03T14:20:00Z' }, opts).word).toBe('Rate-limited until 14:20');
    expect(statusView({ status: 'rate_limited', rate_limited_until: '2025-12-08T09:05:00Z' }, opts).word).toBe('Rate-limited until Mon 9:05');
    expect(statusView({ status: 'rate_limited', rate_limited_until: null }, opts)).toEqual({ icon: '◔', word: 'Rate-limited', tone: 'warn' });
  });

  it('names a restored account paused, not just disabled', () => {
    const restored = { status: 'disabled' as const, rate_limited_until: null, restored_at: '2026-12-03T09:00:00Z' };
    expect(statusView(restored, opts)).toEqual({ icon: '○', word: 'Restored — paused', tone: 'warn' });
    expect(statusView({ ...restored, restored_at: null }, opts).word).toBe('Disabled');
  });

  it('does not crash on a status it does not know', () => {
    const v = statusView({ status: 'mystery' as never, rate_limited_until: null }, opts);
    expect(v.word).toBe('mystery');
    expect(v.tone).toBe('muted');
  });
});

describe('failureReason', () => {
  const f = (code: string, message = 'upstream said no'): Failure => ({ code, message, http_status: 401, at: '2025-12-03T12:03:00Z' });

  it('explains the known terminal codes in words', () => {
    expect(failureReason(f('refresh_token_reused'))).toBe('Refresh token was used by another app');
    expect(failureReason(f('refresh_token_invalidated'))).toBe('Session ended or revoked');
    expect(failureReason(f('refresh_token_expired'))).toBe('Refresh token expired');
    expect(failureReason(f('app_session_terminated'))).toBe('ChatGPT ended this sign-in session');
    expect(failureReason(f('rotation_lost_in_crash'))).toBe('A refreshed token was lost when Codex Vault stopped mid-refresh');
    expect(failureReason(f('unauthorized'))).toBe('ChatGPT no longer accepts this sign-in');
    expect(failureReason(f('invalid_grant'))).toBe('The sign-in is no longer valid');
  });

  it('falls back to the upstream message for an unknown code', () => {
    expect(failureReason(f('something_new', 'Your account was suspended.'))).toBe('Your account was suspended.');
    expect(failureReason(f('something_new', '  '))).toBe('Sign-in failed (something_new)');
  });

  it('gives the code, HTTP status and time in small print', () => {
    expect(failureDetail(f('refresh_token_reused'), opts)).toBe('refresh_token_reused, HTTP 401, 12:03');
    expect(failureDetail({ ...f('invalid_grant'), http_status: null }, opts)).toBe('invalid_grant, 12:03');
  });

  it('advises what to do', () => {
    expect(failureAdvice({ code: 'refresh_token_reused' })).toMatch(/only app that refreshes/);
    expect(failureAdvice({ code: 'invalid_grant' })).toBe('Sign in again to restore this account.');
  });
});

describe('times', () => {
  it('formats durations as the two largest units', () => {
    expect(compactDuration(30_000)).toBe('<1m');
    expect(compactDuration(2 * 60_000 + 59_000)).toBe('2m');
    expect(compactDuration(3 * 3_600_000)).toBe('3h');
    expect(compactDuration(3 * 3_600_000 + 12 * 60_000)).toBe('3h 12m');
    expect(compactDuration(9 * 86_400_000 + 23 * 3_600_000 + 59 * 60_000)).toBe('9d 23h');
    expect(compactDuration(2 * 86_400_000)).toBe('2d');
  });

  it('is relative to now, both ways', () => {
    expect(relativeTime('2025-12-13T11:00:00Z', opts)).toBe('in 9d 23h');
    expect(relativeTime('2025-12-03T11:58:00Z', opts)).toBe('2m ago');
    expect(relativeTime('2025-12-03T11:59:30Z', opts)).toBe('just now');
    expect(relativeTime('2025-12-03T12:00:20Z', opts)).toBe('in <1m');
    expect(relativeTime('2025-12-01T10:00:00Z', opts)).toBe('2d 2h ago');
    expect(relativeTime(null, opts)).toBe('');
    expect(relativeTime('not a time', opts)).toBe('');
  });

  it('reads RFC 3339 with offsets as the same instant', () => {
    expect(relativeTime('2025-12-03T13:58:00+02:00', opts)).toBe('2m ago');
  });

  it('shows the token expiry left, or how long ago it expired', () => {
    expect(tokenExpiry('2025-12-13T11:00:00Z', opts)).toBe('9d 23h');
    expect(tokenExpiry('2025-12-03T11:57:00Z', opts)).toBe('expired 3m ago');
    expect(tokenExpiry(null, opts)).toBe('unknown');
  });

  it('turns RFC 3339 into a short local time', () => {
    expect(shortTime('2025-12-03T14:20:00Z', opts)).toBe('14:20');
    expect(shortTime('2025-12-01T08:00:00Z', opts)).toBe('Mon 8:00');
    expect(shortTime('2025-11-20T08:00:00Z', opts)).toBe('20 Nov 8:00');
    expect(shortTime('2025-12-03T14:20:00Z', { ...opts, timeZone: 'Asia/Tokyo' })).toBe('23:20');
    expect(shortTime('2025-12-03T20:00:00Z', { ...opts, timeZone: 'Asia/Tokyo' })).toBe('Thu 5:00');
    expect(shortTime('', opts)).toBe('');
    expect(shortTime('garbage', opts)).toBe('');
  });
});

describe('summary', () => {
  const a = (status: 'healthy' | 'refreshing' | 'rate_limited' | 'disabled' | 'terminal', last_error: { message: string; at: string } | null = null) => ({ status, last_error });

  it('counts healthy and needing attention', () => {
    const s = summarize([a('healthy'), a('refreshing'), a('healthy'), a('terminal')]);
    expect(s).toEqual({ total: 4, healthy: 3, attention: 1, disabled: 0 });
    expect(summaryLine(s)).toBe('3 healthy · 1 needs attention');
  });

  it('counts rate limits and transient errors as attention, disabled apart', () => {
    const s = summarize([a('rate_limited'), a('healthy', { message: 'timeout', at: '2025-12-03T11:00:00Z' }), a('disabled'), a('healthy')]);
    expect(summaryLine(s)).toBe('1 healthy · 2 need attention · 1 disabled');
  });

  it('says so when there is nothing', () => {
    expect(summaryLine(summarize([]))).toBe('No accounts yet');
    expect(summaryLine(summarize([a('healthy')]))).toBe('1 healthy');
  });
});

describe('usage and identity', () => {
  it('names usage windows', () => {
    expect(windowLabel(300)).toBe('5 h');
    expect(windowLabel(10_080)).toBe('week');
    expect(windowLabel(1_440)).toBe('day');
    expect(windowLabel(2_880)).toBe('2 d');
    expect(windowLabel(45)).toBe('45 min');
    expect(windowLabel(null)).toBe('usage');
  });

  it('clamps and rounds the percent, and grades it', () => {
    expect(usageLane({ used_percent: 52.4, window_minutes: 300, resets_at: '2025-12-03T14:20:00Z' }, opts)).toEqual({ label: '5 h', percent: 52, resets: '14:20', tone: 'ok' });
    expect(usageLane({ used_percent: 130, window_minutes: null, resets_at: null }, opts)).toMatchObject({ percent: 100, resets: '', tone: 'bad' });
    expect(usageLane({ used_percent: 75, window_minutes: 10_080, resets_at: null }, opts).tone).toBe('warn');
  });

  it('joins email and plan', () => {
    expect(identityLine({ email: 'ana@corp.com', plan: 'team' })).toBe('ana@corp.com · Team');
    expect(identityLine({ email: null, plan: 'plus' })).toBe('Plus');
    expect(identityLine({ email: 'ana@me.com', plan: null })).toBe('ana@me.com');
  });
});

describe('labelProblem', () => {
  it('accepts a normal label', () => {
    expect(labelProblem('work')).toBeNull();
    expect(labelProblem('x'.repeat(64))).toBeNull();
  });
  it('names what is wrong, as the core would refuse it', () => {
    expect(labelProblem('')).toMatch(/empty/);
    expect(labelProblem('   ')).toMatch(/empty/);
    expect(labelProblem('a\nb')).toMatch(/control/);
    expect(labelProblem('a\u001b[31m')).toMatch(/control/);
    expect(labelProblem('x'.repeat(65))).toMatch(/64/);
  });
});

describe('usageNote', () => {
  const now = new Date('2026-03-01T12:00:00Z');
  const usage = { updated_at: '2026-03-01T11:00:00Z' };
  it('says the numbers may be old when the last usage poll was refused', () => {
    expect(usageNote({ ...usage, stale: true }, { now })).toBe('Usage may be old (last read 1h ago).');
    expect(usageNote({ stale: true, updated_at: 'garbage' }, { now })).toBe('Usage may be old.');
  });
  it('says nothing for fresh usage or none', () => {
    expect(usageNote({ ...usage, stale: false }, { now })).toBeNull();
    expect(usageNote(null, { now })).toBeNull();
  });
});

describe('previewActionText', () => {
  it('explains add, update and keep', () => {
    expect(previewActionText({ action: 'add', existing: null })).toBe('This adds a new account.');
    expect(previewActionText({ action: 'update', existing: { id: 'a', label: 'work' } })).toMatch(/already held as "work".*updates/);
    expect(previewActionText({ action: 'keep_newer', existing: { id: 'a', label: 'work' } })).toMatch(/keeps the newer tokens/);
  });
});

describe('eventWord', () => {
  it('words known kinds and passes unknown ones through readably', () => {
    expect(eventWord('race_recovered')).toBe('Recovered a refresh race');
    expect(eventWord('renamed')).toBe('Renamed');
    expect(eventWord('something_new')).toBe('something new');
  });
});

describe('endpoint panel helpers', () => {
  it('accepts only usable port numbers', () => {
    expect(portProblem('8417')).toBeNull();
    expect(portProblem(' 65535 ')).toBeNull();
    expect(portProblem('80')).toBe('Choose a port from 1024 to 65535.');
    expect(portProblem('70000')).toBe('Choose a port from 1024 to 65535.');
    expect(portProblem('84a7')).toBe('Enter a port number, like 8417.');
    expect(portProblem('')).toBe('Enter a port number, like 8417.');
  });

  it('lists served counts busiest first, by label', () => {
    const rows = servedRows({ a: 2, b: 5, gone123456789: 1, idle: 0 }, [
      { id: 'a', label: 'work' },
      { id: 'b', label: 'home' },
      { id: 'idle', label: 'idle' },
    ]);
    expect(rows).toEqual([
      { id: 'b', label: 'home', count: 5 },
      { id: 'a', label: 'work', count: 2 },
      { id: 'gone123456789', label: 'removed account gone1234', count: 1 },
    ]);
  });
});

describe('startupAdvice', () => {
  it('says what to install or unlock when the keychain is unavailable', () => {
    expect(startupAdvice('keychain_unavailable')).toContain('gnome-keyring');
    expect(startupAdvice('keychain_unavailable')).toContain('unlock');
  });

  it('never suggests deleting anything', () => {
    const codes: ErrorCode[] = ['key_missing', 'key_mismatch', 'store_not_a_database', 'store_corrupt', 'store_too_new', 'unknown'];
    for (const code of codes) {
      expect(startupAdvice(code)).not.toMatch(/\bdelete (it|the|your)/i);
    }
    expect(startupAdvice('key_missing')).toContain('never deleted');
    expect(startupAdvice('store_corrupt')).toContain('set the store aside');
  });
});
