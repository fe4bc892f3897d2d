// The bulk import's words: what each row does, its format, the summary line. The CLI prints the
// same summary (src-tauri/src/cli/import.rs).
import type { BulkItem, BulkPlan } from './api';
import type { PeerFormat } from './bindings/PeerFormat';

const FORMATS: Record<PeerFormat, string> = {
  codex_auth_json: 'Codex auth.json',
  cli_proxy_api: 'CLIProxyAPI',
  sub2api: 'sub2api export',
  codex_lb_export: 'codex-lb export',
  open_code: 'OpenCode auth.json',
};

export function bulkFormatText(format: PeerFormat | null): string {
  return format ? FORMATS[format] : 'unreadable';
}

/** The row's verb: what the import will do (`preview`) or did. */
export function bulkActionText(item: BulkItem, imported: boolean): string {
  if (item.failed) return 'Failed';
  switch (item.action) {
    case 'new':
      return imported ? 'Added' : 'Add';
    case 'update':
      return imported ? 'Updated' : 'Update (newer tokens)';
    case 'kept_newer':
      return 'Keep held tokens (newer)';
    case 'duplicate':
      return 'Duplicate';
    case 'invalid':
      return 'Invalid';
  }
}

export function bulkSummary(plan: BulkPlan, preview: boolean): string {
  const n = (a: BulkItem['action']) => plan.items.filter((i) => i.action === a).length;
  const failed = plan.items.filter((i) => i.failed).length;
  return (
    `${preview ? 'Would import' : 'Imported'}: ${n('new')} new, ${n('update')} updated, ` +
    `${n('kept_newer')} kept newer; ${n('duplicate')} duplicate, ${n('invalid')} invalid` +
    (failed > 0 ? `, ${failed} failed.` : '.')
  );
}
