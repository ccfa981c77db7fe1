// The proxy-key form: what the page edits, checked and turned into the body of
// POST /api/proxy-keys and PUT /api/proxy-keys/{id}.
import type { ProxyKey, ProxyKeyInput } from '../api/types'

export interface ProxyKeyForm {
  name: string
  groups: string[] // empty: every group
  enabled: boolean
  expires_at: number | null // ms since 1970, as the date picker holds it
  notes: string
  rpm: number | null
  tpm: number | null
  daily_tokens: number | null
  monthly_tokens: number | null
}

export const limitFields = ['rpm', 'tpm', 'daily_tokens', 'monthly_tokens'] as const

export function emptyProxyKeyForm(): ProxyKeyForm {
  return { name: '', groups: [], enabled: true, expires_at: null, notes: '', rpm: null, tpm: null, daily_tokens: null, monthly_tokens: null }
}

export function formFromProxyKey(k: ProxyKey): ProxyKeyForm {
  const n = (v: number) => (v > 0 ? v : null)
  return {
    name: k.name, groups: [...k.groups], enabled: k.enabled, expires_at: k.expires_at ? Date.parse(k.expires_at) : null,
    notes: k.notes, rpm: n(k.rpm), tpm: n(k.tpm), daily_tokens: n(k.daily_tokens), monthly_tokens: n(k.monthly_tokens),
  }
}

type Translate = (id: string, args?: Record<string, unknown>) => string

/** The request body, or the errors by field (translated) when the form is not valid. */
export function buildProxyKeyInput(f: ProxyKeyForm, t: Translate, now = Date.now()): { input?: ProxyKeyInput; errors: Record<string, string> } {
  const errors: Record<string, string> = {}
  const name = f.name.trim()
  if (!name || name.length > 100) errors.name = t('proxyKeys.err.name')
  for (const k of limitFields) {
    const v = f[k]
    if (v !== null && (!Number.isInteger(v) || v < 0)) errors[k] = t('proxyKeys.err.limit')
  }
  if (f.expires_at !== null && f.expires_at <= now) errors.expires_at = t('proxyKeys.err.expires')
  if (Object.keys(errors).length) return { errors }
  return {
    errors,
    input: {
      name, groups: f.groups, enabled: f.enabled,
      expires_at: f.expires_at === null ? null : new Date(f.expires_at).toISOString().replace(/\.\d+Z$/, 'Z'),
      notes: f.notes.trim(), rpm: f.rpm ?? 0, tpm: f.tpm ?? 0, daily_tokens: f.daily_tokens ?? 0, monthly_tokens: f.monthly_tokens ?? 0,
    },
  }
}

/** "left / quota" of a token quota, "—" without one. */
export function remainingText(quota: number, left: number | null | undefined, fmt: (n: number) => string): string {
  if (!quota || left === null || left === undefined) return '—'
  return `${fmt(left)} / ${fmt(quota)}`
}
