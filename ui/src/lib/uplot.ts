// The one place uPlot is loaded from. uPlot runs `new Intl.NumberFormat(navigator.language)` as
// its module loads, and WebKitGTK reports the POSIX locale "C" as `navigator.language` under
// LANG=C (CI, minimal containers, some services): that tag throws a RangeError and the whole page
// would fail to start. So the tag is checked first (uplotLocale.ts), and this module is what the
// rest of the UI imports: `import uPlot from './uplot'` (types may come from 'uplot' directly).
import './uplotLocale';
import uPlot from 'uplot';

export default uPlot;
