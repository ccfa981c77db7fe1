import { describe, expect, it } from 'vitest'
import { buildProxyKeyInput, emptyProxyKeyForm, formFromProxyKey, remainingText } from './proxyKeys'
import type { ProxyKey } from '../api/types'

const tr = (id: string) => id
const now = Date.parse('2026-01-01T00:00:00Z')

describe('proxy-key form', () => {
  it('builds the body of a valid key: trimmed, empty limits as 0, the expiry in RFC 3339', () => {
    const f = emptyProxyKeyForm()
    Object.assign(f, { name: '  team-a ', groups: ['openai'], notes: ' n ', rpm: 60, daily_tokens: 1000, expires_at: Date.parse('2026-02-01T12:00:00.500Z') })
    const { input, errors } = buildProxyKeyInput(f, tr, now)
    expect(errors).toEqual({})
    expect(input).toEqual({
      name: 'team-a', groups: ['openai'], enabled: true, expires_at: '2026-02-01T12:00:00Z', notes: 'n',
      rpm: 60, tpm: 0, daily_tokens: 1000, monthly_tokens: 0,
    })
  })
  it('names every bad field and builds nothing', () => {
    const f = emptyProxyKeyForm()
    Object.assign(f, { name: ' ', rpm: -1, tpm: 1.5, expires_at: now - 1 })
    const { input, errors } = buildProxyKeyInput(f, tr, now)
    expect(input).toBeUndefined()
    expect(errors).toEqual({ name: 'proxyKeys.err.name', rpm: 'proxyKeys.err.limit', tpm: 'proxyKeys.err.limit', expires_at: 'proxyKeys.err.expires' })
  })
  it('edits a key as it is, no limit shown empty', () => {
    const k = {
      id: 3, name: 'k', source: 'named', read_only: false, masked: 'sk-a…z', groups: ['g'], enabled: false, expired: false,
      expires_at: '2026-03-01T00:00:00Z', notes: 'x', rpm: 0, tpm: 500, daily_tokens: 0, monthly_tokens: 9,
      remaining: { daily_tokens: null, monthly_tokens: 4 }, created_at: null, last_used_at: null,
    } satisfies ProxyKey
    expect(formFromProxyKey(k)).toEqual({
      name: 'k', groups: ['g'], enabled: false, expires_at: Date.parse('2026-03-01T00:00:00Z'), notes: 'x',
      rpm: null, tpm: 500, daily_tokens: null, monthly_tokens: 9,
    })
  })
  it('shows what is left of a quota', () => {
    const fmt = (n: number) => String(n)
    expect(remainingText(100, 40, fmt)).toBe('40 / 100')
    expect(remainingText(0, null, fmt)).toBe('—')
    expect(remainingText(100, null, fmt)).toBe('—')
  })
})
