/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// Set by `tauri dev` when the app runs on a device on the network (mobile); unset on desktop.
const host = process.env.TAURI_DEV_HOST;
const debug = !!process.env.TAURI_ENV_DEBUG;

export default defineConfig({
  plugins: [svelte()],
  // Tauri loads `ui/dist` from its own custom protocol: relative asset paths work under any origin.
  base: './',
  // Keep the Rust compiler's output visible when `tauri dev` shares the terminal.
  clearScreen: false,
  server: {
    // tauri.conf.json `build.devUrl` points here; strictPort so a busy port fails loudly instead of
    // silently moving to a port the webview never loads.
    port: 1420,
    strictPort: true,
    host: host || false,
    hmr: host ? { protocol: 'ws', host, port: 1421 } : undefined,
    watch: { ignored: ['**/src-tauri/**'] },
  },
  envPrefix: ['VITE_', 'TAURI_ENV_'],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The webview is WebKitGTK (Linux), WKWebView (macOS) or WebView2 (Windows): all handle ES2021.
    target: 'es2021',
    minify: !debug,
    sourcemap: debug,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
