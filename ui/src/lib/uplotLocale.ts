// Gives `navigator.language` a tag Intl accepts when the platform's does not (see uplot.ts). Must
// be evaluated before the 'uplot' module: uplot.ts imports it first.
function accepted(tag: string): boolean {
  try {
    new Intl.NumberFormat(tag);
    return true;
  } catch {
    return false;
  }
}

if (typeof navigator !== 'undefined' && !accepted(navigator.language)) {
  Object.defineProperty(navigator, 'language', { configurable: true, get: () => 'en-US' });
}
