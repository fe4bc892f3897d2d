import { describe, expect, it } from 'vitest';
import type { Account, RestoreItem, RestoreReport } from './api';
import { restoreItemText, restoreSummary } from './backup';

function item(action: RestoreItem['action'], label: string, renamed_from: string | null = null): RestoreItem {
  const account: Account = {
    id: `id-${label}`,
    label,
    email: `${label}@corp.com`,
    chatgpt_account_id: 'acc',
    plan: 'plus',
    status: 'disabled',
    failure: null,
    last_error: null,
    access_expires_at: null,
    last_refresh_at: null,
    rate_limited_until: null,
    usage: null,
    created_at: '2026-11-01T10:00:00Z',
    shared_grant: false,
    shared_grant_where: null,
    held_rotation: null,
    brokered: false,
    broker_holder_seen_at: null,
    restored_at: action === 'kept_newer' ? null : '2026-12-03T09:00:00Z',
  };
  return { action, account, renamed_from };
}

describe('restore report words', () => {
  it('says what happened to each account, and that restored ones wait for a confirmation', () => {
    expect(restoreItemText(item('added', 'work'))).toBe('Added work (work@corp.com); paused until you confirm.');
    expect(restoreItemText(item('added', 'work (2)', 'work'))).toContain('renamed: the label “work” is another');
    expect(restoreItemText(item('replaced', 'home'))).toContain("the backup's tokens are newer; paused");
    expect(restoreItemText(item('kept_newer', 'team'))).toContain('held here are at least as new; unchanged');
  });

  it('counts each action and the paused accounts', () => {
    const report: RestoreReport = {
      backup_created_at: '2026-11-30T08:00:00Z',
      items: [item('added', 'a'), item('added', 'b'), item('replaced', 'c'), item('kept_newer', 'd')],
      settings_applied: [],
      settings_kept: [],
      warning: 'two machines',
    };
    expect(restoreSummary(report)).toBe(
      'Restored a backup of 2026-11-30: 2 added, 1 replaced, 1 kept newer; 3 paused until you confirm.',
    );
  });
});
