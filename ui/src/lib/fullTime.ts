/** A timestamp in the user's locale, for a `title` tooltip; empty when there is none. */
export function fullTime(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '';
}
