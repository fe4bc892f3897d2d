import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const invoke = vi.fn();
vi.mock('@tauri-apps/api/core', () => ({ invoke: (...args: unknown[]) => invoke(...args) }));

import { BACKEND_UNAVAILABLE_CODE, listAccounts, storeInfo, toApiError, type Account } from './api';

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
