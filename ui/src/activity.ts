// The Activity page's arithmetic, kept free of the DOM and of uPlot so it is unit-tested
// (activity.test.ts): time ranges, bucketing the core's per-bucket totals into stacked series, the
// usage history per account with its resets, and the virtual table's visible window.
import type { Filter, GroupBy, Totals, UsagePoint } from './api';

export type Range = '1h' | '24h' | '7d' | '30d';

const HOUR = 3_600_000;
const DAY = 86_400_000;

export const RANGES: { id: Range; name: string; ms: number }[] = [
  { id: '1h', name: '1 h', ms: HOUR },
  { id: '24h', name: '24 h', ms: DAY },
  { id: '7d', name: '7 d', ms: 7 * DAY },
  { id: '30d', name: '30 d', ms: 30 * DAY },
];

export function rangeMs(range: Range): number {
  return RANGES.find((r) => r.id === range)?.ms ?? DAY;
}

/** Hour buckets up to a day (at most 25 bars), day buckets beyond (at most 31). */
export function bucketFor(range: Range): Extract<GroupBy, 'hour' | 'day'> {
  return rangeMs(range) <= DAY ? 'hour' : 'day';
}

export function bucketMs(by: 'hour' | 'day'): number {
  return by === 'hour' ? HOUR : DAY;
}

export interface Choice {
  range: Range;
  accountId: string | null;
  model: string | null;
  status: number | null;
}

/** The core's filter for the page's choices at `nowMs` (the range ends now, open-ended). */
export function toFilter(c: Choice, nowMs: number): Filter {
  return {
    since_ms: nowMs - rangeMs(c.range),
    until_ms: null,
    account_id: c.accountId,
    model: c.model,
    status: c.status,
    before_id: null,
  };
}

export type Metric = 'requests' | 'tokens';

/** A row's tokens as the chart counts them: input + output (cached is part of input, reasoning of output). */
export function tokensOf(t: Pick<Totals, 'input_tokens' | 'output_tokens'>): number {
  return t.input_tokens + t.output_tokens;
}

export interface Stacked {
  /** Bucket starts, in seconds (uPlot's x unit). */
  xs: number[];
  /** One entry per account, in a stable order (by label). */
  accounts: { id: string; label: string }[];
  /** `raw[i][j]`: account i's value in bucket j. */
  raw: number[][];
  /** `stacked[i][j]`: the sum of accounts 0..=i in bucket j (each band's top). */
  stacked: number[][];
}

const NO_ACCOUNT = '';

/**
 * Turns per-bucket, per-account totals into stacked series over every bucket from `sinceMs` to
 * `untilMs` (empty buckets are zeros, so the x axis is the whole range, not just busy hours).
 */
export function stackByAccount(
  rows: Totals[],
  by: 'hour' | 'day',
  sinceMs: number,
  untilMs: number,
  metric: Metric,
  labels: Map<string, string> = new Map(),
): Stacked {
  const step = bucketMs(by);
  const first = Math.floor(sinceMs / step) * step;
  const last = Math.floor(untilMs / step) * step;
  const starts: number[] = [];
  for (let t = first; t <= last; t += step) starts.push(t);
  const index = new Map(starts.map((t, i) => [t, i]));

  const perAccount = new Map<string, { label: string; values: number[]; sum: number }>();
  for (const row of rows) {
    const at = Number(row.key);
    const j = index.get(Math.floor(at / step) * step);
    if (j === undefined) continue;
    const id = row.sub ?? NO_ACCOUNT;
    let entry = perAccount.get(id);
    if (!entry) {
      const label = row.label ?? labels.get(id) ?? (id === NO_ACCOUNT ? 'no account' : id);
      entry = { label, values: starts.map(() => 0), sum: 0 };
      perAccount.set(id, entry);
    }
    const v = metric === 'requests' ? row.requests : tokensOf(row);
    entry.values[j] += v;
    entry.sum += v;
  }

  // By name, not by size: an account keeps its place (and colour) in every chart and range.
  const ordered = [...perAccount.entries()].sort(
    (a, b) => a[1].label.localeCompare(b[1].label) || a[0].localeCompare(b[0]),
  );
  const raw = ordered.map(([, e]) => e.values);
  const stacked: number[][] = [];
  raw.forEach((values, i) => {
    stacked.push(values.map((v, j) => v + (i > 0 ? stacked[i - 1][j] : 0)));
  });
  return {
    xs: starts.map((t) => t / 1000),
    accounts: ordered.map(([id, e]) => ({ id, label: e.label })),
    raw,
    stacked,
  };
}

export interface UsageSeries {
  accountId: string;
  /** Sample times, in seconds. */
  xs: number[];
  primary: (number | null)[];
  secondary: (number | null)[];
  /** Reset moments (seconds) inside the samples' span, per window. */
  primaryResets: number[];
  secondaryResets: number[];
}

/**
 * Splits the usage history per account. A window's reset is marked where the announced reset time
 * moves on (the old one has passed): that is when the used-% fell back.
 */
export function usageByAccount(points: UsagePoint[], nowMs: number): UsageSeries[] {
  const by = new Map<string, UsagePoint[]>();
  for (const p of points) {
    const list = by.get(p.account_id);
    if (list) list.push(p);
    else by.set(p.account_id, [p]);
  }
  const out: UsageSeries[] = [];
  for (const [accountId, list] of by) {
    list.sort((a, b) => a.at_ms - b.at_ms);
    out.push({
      accountId,
      xs: list.map((p) => p.at_ms / 1000),
      primary: list.map((p) => p.primary_used),
      secondary: list.map((p) => p.secondary_used),
      primaryResets: resets(list.map((p) => p.primary_resets_at), list[0].at_ms, nowMs),
      secondaryResets: resets(list.map((p) => p.secondary_resets_at), list[0].at_ms, nowMs),
    });
  }
  return out.sort((a, b) => a.accountId.localeCompare(b.accountId));
}

function resets(announced: (number | null)[], fromMs: number, nowMs: number): number[] {
  const seen = new Set<number>();
  for (const at of announced) {
    if (at !== null && at >= fromMs && at <= nowMs) seen.add(at);
  }
  return [...seen].sort((a, b) => a - b).map((ms) => ms / 1000);
}

export interface VisibleWindow {
  /** First row index to render. */
  start: number;
  /** One past the last row index to render. */
  end: number;
  /** Space above the first rendered row, px. */
  padTop: number;
  /** Space below the last rendered row, px. */
  padBottom: number;
}

/**
 * The rows of a fixed-row-height list that a viewport shows at `scrollTop`, plus `overscan` rows
 * either side so a fast scroll never flashes blank. The list's full height stays `total * rowHeight`.
 */
export function visibleWindow(
  scrollTop: number,
  viewport: number,
  rowHeight: number,
  total: number,
  overscan = 10,
): VisibleWindow {
  if (total <= 0 || rowHeight <= 0) return { start: 0, end: 0, padTop: 0, padBottom: 0 };
  const top = Math.max(0, scrollTop);
  const first = Math.min(total - 1, Math.floor(top / rowHeight));
  const shown = Math.ceil(Math.max(0, viewport) / rowHeight) + 1;
  const start = Math.max(0, first - overscan);
  const end = Math.min(total, first + shown + overscan);
  return { start, end, padTop: start * rowHeight, padBottom: (total - end) * rowHeight };
}

/** Whether the rows loaded so far run out within `ahead` rows of the window's end. */
export function needsMore(end: number, loaded: number, total: number, ahead = 100): boolean {
  return loaded < total && end + ahead >= loaded;
}

/**
 * At most one call of `fn` per `gapMs`: a burst of triggers runs it once at once and once more
 * after the gap (so the last change is never missed). No timer exists while nothing triggers.
 */
export function throttle(fn: () => void, gapMs: number, clock: () => number = Date.now) {
  let last = -Infinity;
  let pending: ReturnType<typeof setTimeout> | null = null;
  const run = () => {
    pending = null;
    last = clock();
    fn();
  };
  const trigger = () => {
    if (pending) return;
    const wait = last + gapMs - clock();
    if (wait <= 0) run();
    else pending = setTimeout(run, wait);
  };
  trigger.cancel = () => {
    if (pending) clearTimeout(pending);
    pending = null;
  };
  return trigger;
}

export function formatCount(n: number): string {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(n >= 10_000_000 ? 0 : 1)}M`;
  if (n >= 10_000) return `${(n / 1_000).toFixed(0)}k`;
  return n.toLocaleString('en-US');
}
