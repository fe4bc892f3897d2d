import { describe, expect, it, vi } from 'vitest';
import type { Totals, UsagePoint } from './api';
import { bucketFor, needsMore, stackByAccount, throttle, toFilter, usageByAccount, visibleWindow } from './activity';

const H = 3_600_000;

function row(key: number, sub: string | null, requests: number, tokens = 0): Totals {
  return {
    key: String(key),
    sub,
    label: null,
    requests,
    failed: 0,
    input_tokens: tokens,
    cached_tokens: 0,
    output_tokens: 1,
    reasoning_tokens: 0,
  };
}

describe('stackByAccount', () => {
  it('fills every bucket of the range and stacks accounts in label order', () => {
    const since = 10 * H + 123;
    const until = 13 * H + 5;
    const rows = [row(10 * H, 'a', 1), row(10 * H, 'b', 5), row(12 * H, 'a', 2), row(13 * H, 'b', 1)];
    const s = stackByAccount(rows, 'hour', since, until, 'requests', new Map([['a', 'Zed'], ['b', 'Bee']]));
    expect(s.xs).toEqual([10, 11, 12, 13].map((h) => (h * H) / 1000));
    expect(s.accounts).toEqual([
      { id: 'b', label: 'Bee' },
      { id: 'a', label: 'Zed' },
    ]);
    expect(s.raw).toEqual([
      [5, 0, 0, 1],
      [1, 0, 2, 0],
    ]);
    expect(s.stacked).toEqual([
      [5, 0, 0, 1],
      [6, 0, 2, 1],
    ]);
  });

  it('sums tokens as input + output, drops buckets outside the range, names a missing account', () => {
    const s = stackByAccount([row(2 * H, null, 1, 10), row(99 * H, 'a', 7, 7)], 'hour', 2 * H, 3 * H, 'tokens');
    expect(s.accounts).toEqual([{ id: '', label: 'no account' }]);
    expect(s.raw).toEqual([[11, 0]]);
  });

  it('buckets by day beyond a day', () => {
    expect(bucketFor('24h')).toBe('hour');
    expect(bucketFor('7d')).toBe('day');
    const s = stackByAccount([row(86_400_000, 'a', 3)], 'day', 86_400_000 + 5, 3 * 86_400_000 - 1, 'requests');
    expect(s.xs.length).toBe(2);
    expect(s.raw).toEqual([[3, 0]]);
  });
});

describe('toFilter', () => {
  it('ends now and narrows by each choice', () => {
    expect(toFilter({ range: '1h', accountId: 'x', model: null, status: 429 }, 5 * H)).toEqual({
      since_ms: 4 * H,
      until_ms: null,
      account_id: 'x',
      model: null,
      status: 429,
      before_id: null,
    });
  });
});

describe('usageByAccount', () => {
  it('splits per account, oldest first, marking each passed reset once', () => {
    const p = (account_id: string, at_ms: number, used: number, reset: number): UsagePoint => ({
      account_id,
      at_ms,
      primary_used: used,
      primary_resets_at: reset,
      secondary_used: null,
      secondary_resets_at: null,
    });
    const out = usageByAccount([p('b', 3000, 5, 2500), p('a', 2000, 90, 2500), p('a', 1000, 80, 2500), p('a', 3000, 1, 9000)], 4000);
    expect(out.map((s) => s.accountId)).toEqual(['a', 'b']);
    expect(out[0].xs).toEqual([1, 2, 3]);
    expect(out[0].primary).toEqual([80, 90, 1]);
    // 2500 passed within a's samples; 9000 is still ahead.
    expect(out[0].primaryResets).toEqual([2.5]);
    // b's only sample is after 2500: nothing to mark inside its span.
    expect(out[1].primaryResets).toEqual([]);
    expect(out[0].secondaryResets).toEqual([]);
  });
});

describe('visibleWindow', () => {
  it('renders only the rows in view plus the overscan, padding the rest', () => {
    const w = visibleWindow(2800, 300, 28, 100_000, 10);
    expect(w.start).toBe(90);
    expect(w.end).toBe(100 + 12 + 10);
    expect(w.padTop).toBe(90 * 28);
    expect(w.padTop + (w.end - w.start) * 28 + w.padBottom).toBe(100_000 * 28);
  });

  it('clamps at both ends and handles an empty list', () => {
    expect(visibleWindow(-50, 300, 28, 5, 10)).toEqual({ start: 0, end: 5, padTop: 0, padBottom: 0 });
    const atEnd = visibleWindow(1e9, 300, 28, 1000, 10);
    expect(atEnd.end).toBe(1000);
    expect(atEnd.padBottom).toBe(0);
    expect(visibleWindow(0, 300, 28, 0)).toEqual({ start: 0, end: 0, padTop: 0, padBottom: 0 });
  });

  it('asks for the next page only near the end of what is loaded', () => {
    expect(needsMore(300, 500, 100_000, 100)).toBe(false);
    expect(needsMore(420, 500, 100_000, 100)).toBe(true);
    expect(needsMore(500, 500, 500, 100)).toBe(false);
  });
});

describe('throttle', () => {
  it('runs a burst once at once and once after the gap, and sets no timer when idle', () => {
    vi.useFakeTimers();
    let now = 0;
    const fn = vi.fn();
    const t = throttle(fn, 1000, () => now);
    t();
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
    now = 100;
    t();
    t();
    t();
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(1);
    now = 1000;
    vi.advanceTimersByTime(900);
    expect(fn).toHaveBeenCalledTimes(2);
    expect(vi.getTimerCount()).toBe(0);
    vi.useRealTimers();
  });
});

describe('uplotLocale', () => {
  it('replaces a locale tag Intl rejects (WebKitGTK under LANG=C) before uPlot loads', async () => {
    vi.stubGlobal('navigator', { language: 'C' });
    vi.resetModules();
    await import('./lib/uplotLocale');
    expect(navigator.language).toBe('en-US');
    expect(() => new Intl.NumberFormat(navigator.language)).not.toThrow();
    vi.unstubAllGlobals();
  });

  it('leaves a valid tag alone', async () => {
    vi.stubGlobal('navigator', { language: 'de-DE' });
    vi.resetModules();
    await import('./lib/uplotLocale');
    expect(navigator.language).toBe('de-DE');
    vi.unstubAllGlobals();
  });
});
