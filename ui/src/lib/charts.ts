// uPlot options for the Activity page's charts: stacked bars per account, and one account's
// 5 h / weekly used-% with its resets marked.
import uPlot from './uplot';
import type { Stacked, UsageSeries } from '../activity';
import { formatCount } from '../activity';
import { seriesColor, type ChartTheme } from './chartTheme';

function axes(theme: ChartTheme, yFormat: (v: number) => string): uPlot.Axis[] {
  const common = {
    stroke: theme.muted,
    grid: { stroke: theme.grid, width: 1 },
    ticks: { stroke: theme.grid, width: 1 },
    font: '11px system-ui, sans-serif',
  };
  return [common, { ...common, size: 48, values: (_u, vals) => vals.map((v) => yFormat(v)) }];
}

/**
 * Bars stacked by account. uPlot has no stacking of its own: each account's series is its band's
 * top (the running sum), drawn from the tallest down so each lower band paints over the one above.
 * The legend shows the account's own value, not the running sum.
 */
export function stackedData(s: Stacked): uPlot.AlignedData {
  const order = s.accounts.map((_, i) => i).reverse();
  return [s.xs, ...order.map((i) => s.stacked[i])] as uPlot.AlignedData;
}

export function stackedOptions(s: Stacked, theme: ChartTheme): Omit<uPlot.Options, 'width' | 'height'> {
  const order = s.accounts.map((_, i) => i).reverse();
  const bars = uPlot.paths.bars?.({ size: [0.7, 48], align: 0 });
  const series: uPlot.Series[] = [
    {},
    ...order.map((i) => ({
      label: s.accounts[i].label,
      stroke: seriesColor(theme, i),
      fill: seriesColor(theme, i),
      width: 0,
      paths: bars,
      points: { show: false },
      value: (_u: uPlot, _v: number | null, _si: number, idx: number | null) =>
        idx === null ? '–' : formatCount(s.raw[i][idx] ?? 0),
    })),
  ];
  return {
    series,
    axes: axes(theme, formatCount),
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    legend: { live: true },
    cursor: { points: { show: false } },
  };
}

/** One account's used-% of both windows over time, with a dashed line at each reset. */
export function usageData(u: UsageSeries): uPlot.AlignedData {
  return [u.xs, u.primary, u.secondary] as uPlot.AlignedData;
}

/** `span`: the page's time range in seconds, so every chart shares one x axis (and one sample is a dot). */
export function usageOptions(
  u: UsageSeries,
  theme: ChartTheme,
  span: [number, number],
): Omit<uPlot.Options, 'width' | 'height'> {
  const primary = theme.accent;
  const secondary = seriesColor(theme, 1);
  const marks = (plot: uPlot) => {
    const ctx = plot.ctx;
    const { top, height } = plot.bbox;
    ctx.save();
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = devicePixelRatio;
    const draw = (times: number[], color: string) => {
      ctx.strokeStyle = color;
      for (const t of times) {
        const x = Math.round(plot.valToPos(t, 'x', true));
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
      }
    };
    draw(u.primaryResets, primary);
    draw(u.secondaryResets, secondary);
    ctx.restore();
  };
  const few = u.xs.length < 3;
  const pct = (_u: uPlot, v: number | null) => (v === null ? '–' : `${Math.round(v)}%`);
  return {
    series: [
      {},
      { label: '5 h used', stroke: primary, width: 2, spanGaps: true, value: pct, points: { show: few, size: 6 } },
      { label: 'weekly used', stroke: secondary, width: 2, spanGaps: true, value: pct, points: { show: few, size: 6 } },
    ],
    axes: axes(theme, (v) => `${v}%`),
    scales: { x: { time: true, range: () => span }, y: { range: [0, 100] } },
    hooks: { draw: [marks] },
    cursor: { points: { show: false } },
  };
}
