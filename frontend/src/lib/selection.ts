import type { Key } from '../api/types'

/**
 * The keys the user ticked, across pages of a server-side paginated table: their ids,
 * and the values of the ones seen, for the routes that take key text.
 */
export class KeySelection {
  private picked = new Map<number, string>()

  get size(): number {
    return this.picked.size
  }
  ids(): number[] {
    return [...this.picked.keys()]
  }
  values(): string[] {
    return [...this.picked.values()]
  }
  has(id: number): boolean {
    return this.picked.has(id)
  }
  clear(): void {
    this.picked.clear()
  }
  /**
   * Applies the table's checked ids for the page shown: rows of this page that are
   * checked are added, rows of this page that are not are removed, and rows of other
   * pages stay as they were.
   */
  applyPage(page: Key[], checked: readonly (number | string)[]): void {
    const on = new Set(checked.map(Number))
    for (const k of page) {
      if (on.has(k.id)) this.picked.set(k.id, k.key_value)
      else this.picked.delete(k.id)
    }
  }
  /** The checked ids to show on a page. */
  checkedOn(page: Key[]): number[] {
    return page.filter((k) => this.picked.has(k.id)).map((k) => k.id)
  }
  /** Selected keys of a page matching a predicate (e.g. the invalid ones). */
  pick(page: Key[], f: (k: Key) => boolean): void {
    for (const k of page) if (f(k)) this.picked.set(k.id, k.key_value)
  }
}

/** Mask of a key for display: the ends only. */
export function maskKey(v: string): string {
  if (v.length <= 8) return v.slice(0, 2) + '****'
  return v.slice(0, 4) + '****' + v.slice(-4)
}

/**
 * The query of the key table's search box: a whole key is looked up exactly (key_value);
 * a part of a masked key ("sk-a****wxyz") or a hash prefix is a search.
 */
export function searchQuery(text: string): { key_value?: string; search?: string } {
  const q = text.trim()
  if (!q) return {}
  if (q.length <= 12 || q.includes('*') || /^[0-9a-fA-F]+$/.test(q)) return { search: q }
  return { key_value: q }
}
