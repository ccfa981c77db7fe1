import { describe, expect, it } from 'vitest'
import en from './en'
import zhCN from './zh-CN'
import ja from './ja'
import { detectLang } from '../lib/prefs'

function flatten(o: Record<string, unknown>, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v && typeof v === 'object') Object.assign(out, flatten(v as Record<string, unknown>, prefix + k + '.'))
    else out[prefix + k] = String(v)
  }
  return out
}

// Texts that are the same in every language: names and placeholders.
const same = new Set(['login.placeholder'])

describe('message catalogues', () => {
  const base = flatten(en)
  for (const [name, cat] of [['zh-CN', zhCN], ['ja', ja]] as const) {
    it(`${name} has every text of English, translated`, () => {
      const flat = flatten(cat)
      expect(Object.keys(flat).sort()).toEqual(Object.keys(base).sort())
      const untranslated = Object.keys(base).filter((k) => !same.has(k) && flat[k] === base[k])
      expect(untranslated).toEqual([])
    })
    it(`${name} keeps the placeholders of each text`, () => {
      const flat = flatten(cat)
      for (const [k, v] of Object.entries(base)) {
        const want = (v.match(/\{\w+\}/g) ?? []).sort()
        expect([k, (flat[k].match(/\{\w+\}/g) ?? []).sort()]).toEqual([k, want])
      }
    })
  }
  it('picks the browser language', () => {
    expect(detectLang(['zh-TW', 'en'])).toBe('zh-CN')
    expect(detectLang(['ja-JP'])).toBe('ja')
    expect(detectLang(['fr-FR', 'en-GB'])).toBe('en')
    expect(detectLang(['de'])).toBe('en')
  })
})
