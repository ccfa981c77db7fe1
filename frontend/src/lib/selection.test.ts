import { describe, expect, it } from 'vitest'
import { KeySelection, maskKey, searchQuery } from './selection'
import type { Key } from '../api/types'

const key = (id: number, status: 'active' | 'invalid' = 'active') => ({ id, key_value: 'sk-' + id, status }) as Key

describe('key selection across pages', () => {
  it('keeps the rows of other pages when a page changes', () => {
    const s = new KeySelection()
    const p1 = [key(1), key(2), key(3)]
    const p2 = [key(4), key(5)]
    s.applyPage(p1, [1, 3])
    s.applyPage(p2, [5])
    expect(s.ids().sort()).toEqual([1, 3, 5])
    expect(s.checkedOn(p1)).toEqual([1, 3])
    // Unticking on page 1 leaves page 2 alone.
    s.applyPage(p1, [3])
    expect(s.ids().sort()).toEqual([3, 5])
    expect(s.values().sort()).toEqual(['sk-3', 'sk-5'])
    expect(s.size).toBe(2)
    s.clear()
    expect(s.size).toBe(0)
  })

  it('accepts the ids as the table gives them', () => {
    const s = new KeySelection()
    s.applyPage([key(10)], ['10'])
    expect(s.has(10)).toBe(true)
  })

  it('picks the invalid keys of a page', () => {
    const s = new KeySelection()
    const page = [key(1), key(2, 'invalid'), key(3, 'invalid')]
    s.applyPage(page, [1])
    s.pick(page, (k) => k.status === 'invalid')
    expect(s.checkedOn(page)).toEqual([1, 2, 3])
  })

  it('masks keys', () => {
    expect(maskKey('sk-abcdefghijkl')).toBe('sk-a****ijkl')
    expect(maskKey('short')).toBe('sh****')
  })
})

describe('key search', () => {
  it('looks a whole key up exactly and searches masks and hashes', () => {
    expect(searchQuery('  ')).toEqual({})
    expect(searchQuery('sk-good-000042-e2e')).toEqual({ key_value: 'sk-good-000042-e2e' })
    expect(searchQuery('sk-a****wxyz')).toEqual({ search: 'sk-a****wxyz' })
    expect(searchQuery('wxyz')).toEqual({ search: 'wxyz' })
    expect(searchQuery('9f86d081884c7d659a2feaa0c55ad015')).toEqual({ search: '9f86d081884c7d659a2feaa0c55ad015' })
  })
})
