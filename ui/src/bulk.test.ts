import { describe, expect, it } from 'vitest';
import type { BulkItem, BulkPlan } from './api';
import { bulkActionText, bulkFormatText, bulkSummary } from './bulk';

function item(action: BulkItem['action'], failed = false): BulkItem {
  return {
    file: '/x/a.json',
    locator: '',
    format: 'sub2api',
    action,
    email: 'a@corp.com',
    plan: 'plus',
    label: 'a',
    existing: null,
    label_note: null,
    reason: null,
    codex_cli: false,
    codex_cli_note: null,
    result: null,
    failed,
  };
}

describe('bulk import words', () => {
  it('counts each action as the CLI summary does', () => {
    const plan: BulkPlan = {
      items: [item('new'), item('new'), item('update'), item('kept_newer'), item('duplicate'), item('invalid')],
      note: '',
    };
    expect(bulkSummary(plan, true)).toBe('Would import: 2 new, 1 updated, 1 kept newer; 1 duplicate, 1 invalid.');
    plan.items[0].failed = true;
    expect(bulkSummary(plan, false)).toBe('Imported: 2 new, 1 updated, 1 kept newer; 1 duplicate, 1 invalid, 1 failed.');
  });

  it('says what a row will do, then what it did', () => {
    expect(bulkActionText(item('new'), false)).toBe('Add');
    expect(bulkActionText(item('new'), true)).toBe('Added');
    expect(bulkActionText(item('update', true), true)).toBe('Failed');
    expect(bulkFormatText(null)).toBe('unreadable');
    expect(bulkFormatText('open_code')).toBe('OpenCode auth.json');
  });
});
