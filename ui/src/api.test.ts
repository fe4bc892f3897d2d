import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const invoke = vi.fn();
vi.mock('@tauri-apps/api/core', () => ({ invoke: (...args: unknown[]) => invoke(...args) }));
const listen = vi.fn();
vi.mock('@tauri-apps/api/event', () => ({ listen: (...args: unknown[]) => listen(...args) }));

import {
  BACKEND_UNAVAILABLE_CODE,
  EVENTS,
  accountHistory,
  deviceSignInStart,
  onDeviceProgress,
  signInPaste,
  importAuthJson,
  importCodexCliAuth,
  listAccounts,
  onAccountsChanged,
  onSignInFinished,
  previewAuthJson,
  previewCodexCliAuth,
  refreshAccount,
  removeAccount,
  renameAccount,
  setAccountDisabled,
  signInCancel,
  signInStart,
  storeInfo,
  toApiError,
  type Account,
  about,
  endpointKey,
  endpointRotateKey,
  endpointSetPort,
  endpointStart,
  endpointStatus,
  endpointStop,
  getAutostart,
  getPrefs,
  onEndpointChanged,
  restartApp,
  setAsideStore,
  setAutostart,
  setPrefs,
  startupProblem,
} from './api';

const g = globalThis as { __TAURI_INTERNALS__?: unknown };

describe('toApiError', () => {
  it('keeps a core error as it is', () => {
    expect(toApiError({ code: 'store_locked', message: 'The store is busy.', extra: 1 })).toEqual({ code: 'store_locked', message: 'The store is busy.' });
  });

  it('turns a string into code unknown', () => {
    expect(toApiError('command list_accounts not found')).toEqual({ code: 'unknown', message: 'command list_accounts not found' });
    expect(toApiError('')).toEqual({ code: 'unknown', message: 'Unknown error' });
  });

  it('turns an Error into code unknown with its message', () => {
    expect(toApiError(new TypeError('boom'))).toEqual({ code: 'unknown', message: 'boom' });
  });

  it('does not trust a half-shaped object', () => {
    expect(toApiError({ code: 42, message: 'numeric code' })).toEqual({ code: 'unknown', message: 'numeric code' });
    expect(toApiError({ what: 'no message' })).toEqual({ code: 'unknown', message: '{"what":"no message"}' });
  });

  it('handles nothing and other values', () => {
    expect(toApiError(undefined)).toEqual({ code: 'unknown', message: 'Unknown error' });
    expect(toApiError(null)).toEqual({ code: 'unknown', message: 'Unknown error' });
    expect(toApiError(404)).toEqual({ code: 'unknown', message: '404' });
  });
});

describe('commands', () => {
  beforeEach(() => {
    g.__TAURI_INTERNALS__ = {};
    invoke.mockReset();
  });
  afterEach(() => {
    delete g.__TAURI_INTERNALS__;
  });

  it('list_accounts passes the core answer through', async () => {
    const account = { id: 'a1', label: 'work', status: 'healthy' } as Account;
    invoke.mockResolvedValueOnce([account]);
    await expect(listAccounts()).resolves.toEqual([account]);
    expect(invoke).toHaveBeenCalledWith('list_accounts', undefined);
  });

  it('store_info passes the core answer through', async () => {
    invoke.mockResolvedValueOnce({ data_dir: '/d', key_store: 'file', warning: 'file key' });
    await expect(storeInfo()).resolves.toEqual({ data_dir: '/d', key_store: 'file', warning: 'file key' });
    expect(invoke).toHaveBeenCalledWith('store_info', undefined);
  });

  it('rejects with the core {code, message}', async () => {
    invoke.mockRejectedValueOnce({ code: 'key_missing', message: 'The data key is missing from the keychain.' });
    await expect(listAccounts()).rejects.toEqual({ code: 'key_missing', message: 'The data key is missing from the keychain.' });
  });

  it('rejects a string with code unknown', async () => {
    invoke.mockRejectedValueOnce('Command list_accounts not found');
    await expect(listAccounts()).rejects.toEqual({ code: 'unknown', message: 'Command list_accounts not found' });
  });

  it('says the backend is unavailable outside the app, without calling invoke', async () => {
    delete g.__TAURI_INTERNALS__;
    await expect(storeInfo()).rejects.toMatchObject({ code: BACKEND_UNAVAILABLE_CODE });
    expect(invoke).not.toHaveBeenCalled();
  });
});

describe('account commands', () => {
  beforeEach(() => {
    g.__TAURI_INTERNALS__ = {};
    invoke.mockReset();
    invoke.mockResolvedValue(null);
  });
  afterEach(() => {
    delete g.__TAURI_INTERNALS__;
  });

  it('names each command and its arguments as the core expects', async () => {
    await previewAuthJson('{"x":1}');
    expect(invoke).toHaveBeenLastCalledWith('preview_auth_json', { text: '{"x":1}' });
    await importAuthJson('{}', 'work');
    expect(invoke).toHaveBeenLastCalledWith('import_auth_json', { text: '{}', label: 'work' });
    await previewCodexCliAuth();
    expect(invoke).toHaveBeenLastCalledWith('preview_codex_cli_auth', undefined);
    await importCodexCliAuth('detach', 'cli');
    expect(invoke).toHaveBeenLastCalledWith('import_codex_cli_auth', { ownership: 'detach', label: 'cli' });
    await renameAccount('a1', 'day job');
    expect(invoke).toHaveBeenLastCalledWith('rename_account', { id: 'a1', label: 'day job' });
    await setAccountDisabled('a1', true);
    expect(invoke).toHaveBeenLastCalledWith('set_account_disabled', { id: 'a1', disabled: true });
    await removeAccount('a1');
    expect(invoke).toHaveBeenLastCalledWith('remove_account', { id: 'a1' });
    await accountHistory('a1');
    expect(invoke).toHaveBeenLastCalledWith('account_history', { id: 'a1', limit: 50 });
    await refreshAccount('a1');
    expect(invoke).toHaveBeenLastCalledWith('refresh_account', { id: 'a1' });
    await signInStart('x');
    expect(invoke).toHaveBeenLastCalledWith('sign_in_start', { label: 'x' });
    await signInCancel();
    expect(invoke).toHaveBeenLastCalledWith('sign_in_cancel', undefined);
    await deviceSignInStart('remote');
    expect(invoke).toHaveBeenLastCalledWith('device_sign_in_start', { label: 'remote' });
    await deviceSignInStart('');
    expect(invoke).toHaveBeenLastCalledWith('device_sign_in_start', { label: null });
    await signInPaste('http://localhost:1455/auth/callback?code=c&state=s');
    expect(invoke).toHaveBeenLastCalledWith('sign_in_paste', {
      url: 'http://localhost:1455/auth/callback?code=c&state=s',
    });
  });

  it('sends an empty or missing label as null (the core picks one)', async () => {
    await importAuthJson('{}', '');
    expect(invoke).toHaveBeenLastCalledWith('import_auth_json', { text: '{}', label: null });
    await importCodexCliAuth('broker');
    expect(invoke).toHaveBeenLastCalledWith('import_codex_cli_auth', { ownership: 'broker', label: null });
    await signInStart(null);
    expect(invoke).toHaveBeenLastCalledWith('sign_in_start', { label: null });
  });

  it('names the endpoint, preference and start-up commands as src-tauri/src/desktop registers them', async () => {
    const calls: Array<[() => Promise<unknown>, string, unknown]> = [
      [endpointStatus, 'endpoint_status', undefined],
      [endpointStart, 'endpoint_start', undefined],
      [endpointStop, 'endpoint_stop', undefined],
      [() => endpointSetPort(9100), 'endpoint_set_port', { port: 9100 }],
      [endpointKey, 'endpoint_key', undefined],
      [endpointRotateKey, 'endpoint_rotate_key', undefined],
      [getPrefs, 'get_prefs', undefined],
      [() => setPrefs({ theme: 'dark', start_minimized: true }), 'set_prefs', { prefs: { theme: 'dark', start_minimized: true } }],
      [getAutostart, 'get_autostart', undefined],
      [() => setAutostart(true), 'set_autostart', { enabled: true }],
      [about, 'about', undefined],
      [startupProblem, 'startup_problem', undefined],
      [setAsideStore, 'set_aside_store', undefined],
      [restartApp, 'restart_app', undefined],
    ];
    for (const [fn, name, args] of calls) {
      await fn();
      expect(invoke).toHaveBeenLastCalledWith(name, args);
    }
  });

  it('passes an import error through as {code, message}', async () => {
    invoke.mockRejectedValueOnce({ code: 'auth_json_not_json', message: 'cannot import the pasted auth.json: it is not valid JSON' });
    await expect(previewAuthJson('{')).rejects.toEqual({
      code: 'auth_json_not_json',
      message: 'cannot import the pasted auth.json: it is not valid JSON',
    });
  });
});

describe('events', () => {
  beforeEach(() => {
    g.__TAURI_INTERNALS__ = {};
    listen.mockReset();
  });
  afterEach(() => {
    delete g.__TAURI_INTERNALS__;
  });

  it('listens on the namespaced names and hands over the payload only', async () => {
    const stop = vi.fn();
    listen.mockResolvedValue(stop);
    const changed = vi.fn();
    const unlisten = await onAccountsChanged(changed);
    expect(listen).toHaveBeenCalledWith('accounts://changed', expect.any(Function));
    const handler = listen.mock.calls[0][1] as (e: { payload: unknown }) => void;
    handler({ payload: { account_id: 'a1' } });
    expect(changed).toHaveBeenCalledWith({ account_id: 'a1' });
    unlisten();
    expect(stop).toHaveBeenCalled();

    await onSignInFinished(vi.fn());
    expect(listen).toHaveBeenLastCalledWith(EVENTS.signInFinished, expect.any(Function));
    expect(EVENTS.signInFinished).toBe('signin://finished');

    await onDeviceProgress(vi.fn());
    expect(listen).toHaveBeenLastCalledWith('signin://device', expect.any(Function));
  });

  it('delivers endpoint://changed with the status', async () => {
    listen.mockResolvedValue(vi.fn());
    const seen = vi.fn();
    await onEndpointChanged(seen);
    expect(listen).toHaveBeenLastCalledWith('endpoint://changed', expect.any(Function));
    const handler = listen.mock.calls[listen.mock.calls.length - 1][1] as (e: { payload: unknown }) => void;
    handler({ payload: { running: true, port: 8417 } });
    expect(seen).toHaveBeenCalledWith({ running: true, port: 8417 });
  });

  it('is a no-op outside the desktop app', async () => {
    delete g.__TAURI_INTERNALS__;
    const unlisten = await onAccountsChanged(vi.fn());
    expect(listen).not.toHaveBeenCalled();
    expect(() => unlisten()).not.toThrow();
  });
});
