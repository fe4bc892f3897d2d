// Chart colours come from app.css's variables, so the charts follow the light/dark palette like
// everything else. Canvas cannot use CSS variables directly: they are read when a chart is drawn,
// and charts are re-drawn when the theme changes (an attribute change or the system's scheme —
// both events; no polling).

export interface ChartTheme {
  text: string;
  muted: string;
  grid: string;
  surface: string;
  accent: string;
  warn: string;
  bad: string;
  /** One colour per account, in stacking order. */
  series: string[];
}

// A categorical palette that stays apart for colour-blind readers (Okabe–Ito), brightened in dark.
const LIGHT_SERIES = ['#0b5cd5', '#d55e00', '#009e73', '#cc79a7', '#8a5a00', '#56b4e9', '#6e7781', '#e69f00'];
const DARK_SERIES = ['#6ea8fe', '#ff8c42', '#3fd0a0', '#e7a0c8', '#e3b341', '#8fd3ff', '#9aa3af', '#ffc24d'];

function isDark(): boolean {
  const forced = document.documentElement.dataset.theme;
  if (forced === 'dark') return true;
  if (forced === 'light') return false;
  return window.matchMedia('(prefers-color-scheme: dark)').matches;
}

export function readTheme(): ChartTheme {
  const css = getComputedStyle(document.documentElement);
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
  return {
    text: v('--text', '#1b1f24'),
    muted: v('--muted', '#5b6472'),
    grid: v('--border', '#dde1e7'),
    surface: v('--surface', '#ffffff'),
    accent: v('--accent', '#0b5cd5'),
    warn: v('--warn', '#8a5a00'),
    bad: v('--bad', '#c4212b'),
    series: isDark() ? DARK_SERIES : LIGHT_SERIES,
  };
}

export function seriesColor(theme: ChartTheme, i: number): string {
  return theme.series[i % theme.series.length];
}

/** Calls `handler` whenever the palette may have changed; returns the unsubscribe. */
export function onThemeChange(handler: () => void): () => void {
  const observer = new MutationObserver(handler);
  observer.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
  const media = window.matchMedia('(prefers-color-scheme: dark)');
  media.addEventListener('change', handler);
  return () => {
    observer.disconnect();
    media.removeEventListener('change', handler);
  };
}
