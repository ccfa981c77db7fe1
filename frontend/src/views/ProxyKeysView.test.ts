import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createApp, h, nextTick, type App } from 'vue'
import { NDialogProvider, NMessageProvider } from 'naive-ui'
import { createMemoryHistory, createRouter } from 'vue-router'
import { i18n } from '../i18n'
import { session } from '../lib/session'
import type { ProxyKey } from '../api/types'
import ProxyKeysView from './ProxyKeysView.vue'

// The page against a fake admin API behind a mocked fetch: what it shows, and what it sends.

function named(id: number, name: string, extra: Partial<ProxyKey> = {}): ProxyKey {
  return {
    id, name, source: 'named', read_only: false, masked: `sk-${id}…xyz`, groups: ['openai'], enabled: true, expired: false,
    expires_at: null, notes: '', rpm: 60, tpm: 0, daily_tokens: 100, monthly_tokens: 0,
    remaining: { daily_tokens: 40, monthly_tokens: null }, created_at: '2026-01-01T00:00:00Z', last_used_at: null, ...extra,
  }
}
const legacy: ProxyKey = {
  name: '', source: 'global', read_only: true, masked: 'sk-g…bal', groups: [], enabled: true, expired: false, expires_at: null,
  notes: '', rpm: 0, tpm: 0, daily_tokens: 0, monthly_tokens: 0, remaining: { daily_tokens: null, monthly_tokens: null },
  created_at: null, last_used_at: null,
}

let keys: ProxyKey[]
let calls: { method: string; path: string; body?: any }[]
let listStatus: number
let app: App | null = null

function envelope(data: unknown, status = 200) {
  const body = status === 200 ? { code: 0, message: 'success', data } : { code: 'NOT_FOUND', message: 'not found' }
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

const fakeFetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
  const url = new URL(String(input), 'http://x')
  const method = init?.method ?? 'GET'
  const body = init?.body ? JSON.parse(String(init.body)) : undefined
  calls.push({ method, path: url.pathname, body })
  const id = Number(url.pathname.split('/')[3])
  switch (`${method} ${url.pathname.replace(/\/\d+/, '/{id}')}`) {
    case 'GET /api/groups':
      return envelope([{ id: 1, name: 'openai', display_name: '' }, { id: 2, name: 'gemini', display_name: '' }])
    case 'GET /api/proxy-keys':
      return listStatus === 200 ? envelope(keys) : envelope(null, listStatus)
    case 'POST /api/proxy-keys': {
      const k = named(keys.length + 10, body.name, { ...body, key: 'sk-secret-new' })
      keys.unshift({ ...k, key: undefined })
      return envelope(k)
    }
    case 'PUT /api/proxy-keys/{id}': {
      const k = keys.find((k) => k.id === id)!
      Object.assign(k, body)
      return envelope(k)
    }
    case 'POST /api/proxy-keys/{id}/rotate':
      return envelope({ ...keys.find((k) => k.id === id), key: 'sk-secret-rotated' })
    case 'DELETE /api/proxy-keys/{id}':
      keys = keys.filter((k) => k.id !== id)
      return envelope(null)
  }
  return envelope(null, 404)
})

async function settle() {
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 0))
    await nextTick()
  }
}

async function mount() {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/', component: ProxyKeysView }, { path: '/usage', component: { render: () => null } }] })
  router.push('/')
  await router.isReady()
  const root = document.createElement('div')
  document.body.appendChild(root)
  app = createApp({ render: () => h(NMessageProvider, () => h(NDialogProvider, () => h(ProxyKeysView))) })
  app.use(router).use(i18n).mount(root)
  await settle()
  return router
}

const q = (sel: string) => document.body.querySelector<HTMLElement>(sel)
const qa = (sel: string) => [...document.body.querySelectorAll<HTMLElement>(sel)]
function type(sel: string, value: string) {
  const input = q(sel) as HTMLInputElement
  input.value = value
  input.dispatchEvent(new Event('input'))
}
async function click(el: HTMLElement | null) {
  expect(el).not.toBeNull()
  el!.click()
  await settle()
}
const positive = () => qa('.n-dialog__action button').at(-1)!

beforeEach(() => {
  keys = [named(1, 'team-a'), legacy]
  calls = []
  listStatus = 200
  session.key = 'admin'
  vi.stubGlobal('fetch', fakeFetch)
})
afterEach(() => {
  app?.unmount()
  app = null
  document.body.innerHTML = ''
  vi.unstubAllGlobals()
})

// Naive UI renders slowly in happy-dom on a loaded machine: more than the default 5 s.
describe('proxy keys page', { timeout: 30_000 }, () => {
  it('lists named keys with their limits and remaining quota, and legacy keys read-only', async () => {
    await mount()
    const text = q('[data-test=pk-table]')!.textContent!
    expect(text).toContain('team-a')
    expect(text).toContain('sk-1…xyz')
    expect(text).toContain('60 req/min')
    expect(text).toContain('Global proxy key')
    expect(text).toContain('sk-g…bal')
    expect(q('[data-test=pk-remaining]')!.textContent).toContain('today 40 / 100')
    // Only the named key can be edited, rotated or deleted.
    expect(qa('[data-test=pk-edit]').length).toBe(1)
    expect(qa('[data-test=pk-delete]').length).toBe(1)
    expect(text).toContain('read-only')
  })

  it('creates a key and shows its secret once', async () => {
    await mount()
    await click(q('[data-test=pk-create]'))
    type('[data-test=pk-form-name]', 'ci-bot')
    await settle()
    await click(q('[data-test=pk-form-save]'))
    const post = calls.find((c) => c.method === 'POST' && c.path === '/api/proxy-keys')
    expect(post?.body).toEqual({ name: 'ci-bot', groups: [], enabled: true, expires_at: null, notes: '', rpm: 0, tpm: 0, daily_tokens: 0, monthly_tokens: 0 })
    expect(q('[data-test=pk-secret-value]')!.textContent).toBe('sk-secret-new')
    expect(q('[data-test=pk-table]')!.textContent).toContain('ci-bot')
    await click(q('[data-test=pk-secret-close]'))
    expect(document.body.textContent).not.toContain('sk-secret-new')
  })

  it('refuses a form without a name and sends nothing', async () => {
    await mount()
    await click(q('[data-test=pk-create]'))
    await click(q('[data-test=pk-form-save]'))
    expect(calls.some((c) => c.method === 'POST')).toBe(false)
    expect(q('[data-test=pk-form]')!.textContent).toContain('1 to 100 characters')
  })

  it('edits, disables and rotates a key', async () => {
    await mount()
    await click(q('[data-test=pk-edit]'))
    type('[data-test=pk-form-name]', 'team-b')
    await settle()
    await click(q('[data-test=pk-form-save]'))
    const put = calls.find((c) => c.method === 'PUT')
    expect(put?.path).toBe('/api/proxy-keys/1')
    expect(put?.body).toMatchObject({ name: 'team-b', groups: ['openai'], rpm: 60, daily_tokens: 100 })

    await click(q('[data-test=pk-enabled]'))
    expect(calls.filter((c) => c.method === 'PUT').at(-1)).toEqual({ method: 'PUT', path: '/api/proxy-keys/1', body: { enabled: false } })

    await click(q('[data-test=pk-rotate]'))
    expect(calls.some((c) => c.path.endsWith('/rotate'))).toBe(false) // not before the confirmation
    await click(positive())
    expect(calls.some((c) => c.method === 'POST' && c.path === '/api/proxy-keys/1/rotate')).toBe(true)
    expect(q('[data-test=pk-secret-value]')!.textContent).toBe('sk-secret-rotated')
  })

  it('deletes a key only once confirmed', async () => {
    await mount()
    await click(q('[data-test=pk-delete]'))
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false)
    await click(positive())
    expect(calls.some((c) => c.method === 'DELETE' && c.path === '/api/proxy-keys/1')).toBe(true)
    expect(q('[data-test=pk-table]')!.textContent).not.toContain('team-a')
  })

  it('links to the usage of a key', async () => {
    const router = await mount()
    await click(q('[data-test=pk-usage]'))
    expect(router.currentRoute.value.fullPath).toBe('/usage?by=proxy_key&proxy_key_id=1')
  })

  it('says so when the server has no proxy-keys routes', async () => {
    listStatus = 404
    await mount()
    expect(q('[data-test=pk-unavailable]')).not.toBeNull()
    expect(q('[data-test=pk-create]')).toBeNull()
  })
})
