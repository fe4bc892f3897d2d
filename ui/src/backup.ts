// The restore report's words, a line per account. The CLI prints the same facts
// (`RestoreReport::lines` in src-tauri/src/accounts/restore.rs).
import type { RestoreItem, RestoreReport } from './api';

export function restoreItemText(item: RestoreItem): string {
  const a = item.account;
  const who = a.email ? `${a.label} (${a.email})` : a.label;
  const renamed = item.renamed_from ? ` — renamed: the label “${item.renamed_from}” is another account's here` : '';
  switch (item.action) {
    case 'added':
      return `Added ${who}${renamed}; paused until you confirm.`;
    case 'replaced':
      return `Replaced ${who}: the backup's tokens are newer; paused until you confirm.`;
    case 'kept_newer':
      return `Kept ${who}: the tokens held here are at least as new; unchanged.`;
  }
}

export function restoreSummary(report: RestoreReport): string {
  const n = (a: RestoreItem['action']) => report.items.filter((i) => i.action === a).length;
  const paused = report.items.filter((i) => i.account.restored_at !== null).length;
  return (
    `Restored a backup of ${report.backup_created_at.slice(0, 10)}: ${n('added')} added, ${n('replaced')} replaced, ` +
    `${n('kept_newer')} kept newer; ${paused} paused until you confirm.`
  );
}
