// Regenerates every app icon from icons/source.svg:
//   1. renders icons/source.svg → icons/source.png (1024×1024) with resvg (prebuilt, from npm);
//   2. runs `tauri icon` on the PNG, writing the sizes Tauri bundles into icons/;
//   3. removes the android/ and ios/ sets `tauri icon` also writes: this app is desktop only, and
//      renders the remaining hicolor sizes (16, 24, 48, 256, 512) for the Linux package;
//   4. copies the SVG to ui/public/favicon.svg (the window's brand mark).
// Run from ui/: `npm run icons`.
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Resvg } from '@resvg/resvg-js';

const icons = fileURLToPath(new URL('../../icons/', import.meta.url));

const svg = readFileSync(`${icons}source.svg`);
const png = new Resvg(svg, { fitTo: { mode: 'width', value: 1024 }, background: 'rgba(0,0,0,0)' })
  .render()
  .asPng();
writeFileSync(`${icons}source.png`, png);
console.log(`rendered ${icons}source.png`);

const tauri = spawnSync('npx', ['--no-install', 'tauri', 'icon', `${icons}source.png`, '-o', icons], {
  stdio: 'inherit',
  shell: process.platform === 'win32',
});
if (tauri.status !== 0) process.exit(tauri.status ?? 1);

for (const dir of ['android', 'ios']) rmSync(`${icons}${dir}`, { recursive: true, force: true });

// The freedesktop hicolor sizes `tauri icon` does not write, rendered from the SVG itself (sharper
// than downscaling the PNG); the .deb installs every PNG listed in tauri.conf.json's bundle.icon.
for (const size of [16, 24, 48, 256, 512]) {
  const out = new Resvg(svg, { fitTo: { mode: 'width', value: size }, background: 'rgba(0,0,0,0)' }).render().asPng();
  writeFileSync(`${icons}${size}x${size}.png`, out);
}
copyFileSync(`${icons}source.svg`, fileURLToPath(new URL('../public/favicon.svg', import.meta.url)));
console.log('icons regenerated (desktop sizes only)');
