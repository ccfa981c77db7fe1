// Figures of the dashboard in Chromium against the real binary on loopback: time to a
// usable dashboard page, and the keys page of a group of MEASURE_KEYS keys (default
// 1,000,000): first page, a search result, and restoring its invalid keys.
//
//   BIN=bin/gpt-load node e2e/measure.mjs
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { callAdmin, freePort, waitHealthy } from './node.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const bin = resolve(root, process.env.BIN || 'bin/gpt-load')
const total = Number(process.env.MEASURE_KEYS || 1_000_000)
const invalid = 1000
const ADMIN = 'measure-Operator-Kx-9081726354-Xyz!'

const upstream = createServer((req, resp) => {
  req.resume()
  req.on('end', () => {
    const ok = (req.headers.authorization || '').startsWith('Bearer sk-good')
    resp.writeHead(ok ? 200 : 401, { 'Content-Type': 'application/json' })
    resp.end(ok ? '{"choices":[]}' : '{"error":{"message":"Incorrect API key provided"}}')
  })
})
await new Promise((r) => upstream.listen(0, '127.0.0.1', r))

const work = mkdtempSync(join(tmpdir(), 'gpt-load-measure-'))
const port = await freePort()
const base = `http://127.0.0.1:${port}`
const server = spawn(bin, [], {
  env: { ...process.env, DATA_DIR: join(work, 'data'), PORT: String(port), HOST: '127.0.0.1', AUTH_KEY: ADMIN, LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'inherit', 'inherit'],
})
await waitHealthy(base, 60_000)

const api = (method, path, body) => callAdmin(base, ADMIN, method, path, body)
async function waitTask() {
  for (;;) {
    const s = await api('GET', '/api/tasks/status')
    if (!s.is_running) return s
    await new Promise((r) => setTimeout(r, 200))
  }
}

const figures = {}
try {
  const g = await api('POST', '/api/groups', {
    name: 'big', channel_type: 'openai', test_model: 'm', upstreams: [{ url: `http://127.0.0.1:${upstream.address().port}`, weight: 1 }],
    config: { blacklist_threshold: 1 },
  })
  const keys = []
  for (let i = 0; i < total - invalid; i++) keys.push('sk-good-' + String(i).padStart(8, '0'))
  const bad = []
  for (let i = 0; i < invalid; i++) bad.push('sk-bad-' + String(i).padStart(8, '0'))
  let t0 = performance.now()
  await api('POST', '/api/keys/add-async', { group_id: g.id, keys_text: [...keys, ...bad].join('\n') })
  const done = await waitTask()
  figures.import_seconds = +((performance.now() - t0) / 1000).toFixed(1)
  figures.imported = done.result?.added_count
  await api('POST', '/api/keys/test-multiple', { group_id: g.id, keys_text: bad.join('\n') })
  // The same reads without the browser, to tell the API's share from the page's.
  for (const [name, path] of [
    ['api_keys_first_page_ms', `/api/keys?group_id=${g.id}&page=1&page_size=15`],
    ['api_keys_invalid_ms', `/api/keys?group_id=${g.id}&page=1&page_size=15&status=invalid`],
    ['api_keys_exact_ms', `/api/keys?group_id=${g.id}&page=1&page_size=15&key_value=sk-good-00500000`],
    ['api_group_stats_ms', `/api/groups/${g.id}/stats`],
    ['api_dashboard_stats_ms', '/api/dashboard/stats'],
  ]) {
    const t = performance.now()
    await api('GET', path)
    figures[name] = Math.round(performance.now() - t)
  }

  const { chromium } = await import('playwright-core')
  const ctx = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  })
  await ctx.addInitScript((k) => localStorage.setItem('gpt-load.auth-key', k), ADMIN)
  const page = ctx.pages()[0] ?? (await ctx.newPage())
  page.setDefaultTimeout(120_000)

  t0 = performance.now()
  await page.goto(base + '/')
  await page.locator('[data-card=keys] .n-statistic-value').waitFor()
  figures.dashboard_ms = Math.round(performance.now() - t0)

  t0 = performance.now()
  await page.goto(base + '/keys?group=' + g.id)
  await page.getByText(`${total} keys`, { exact: true }).waitFor()
  await page.locator('[data-test=key-table] tbody tr').nth(14).waitFor()
  figures.keys_first_page_ms = Math.round(performance.now() - t0)

  t0 = performance.now()
  await page.fill('[data-test=key-search]', 'sk-good-00500000')
  await page.getByText('1 keys', { exact: true }).waitFor()
  figures.keys_search_ms = Math.round(performance.now() - t0 - 300) // less the input's 300 ms pause
  await page.fill('[data-test=key-search]', '')
  await page.getByText(`${total} keys`, { exact: true }).waitFor()

  t0 = performance.now()
  await page.click('[data-test=key-status]')
  await page.locator('.n-base-select-option', { hasText: 'Invalid' }).click()
  await page.getByText(`${invalid} keys`, { exact: true }).waitFor()
  figures.keys_invalid_filter_ms = Math.round(performance.now() - t0)
  t0 = performance.now()
  await page.click('[data-test=bulk]')
  await page.locator('.n-dropdown-option', { hasText: 'Restore all invalid keys' }).click()
  await page.locator('.n-dialog .n-button--warning-type, .n-dialog .n-button--primary-type').last().click()
  await page.getByText('0 keys', { exact: true }).waitFor()
  figures.keys_restore_all_invalid_ms = Math.round(performance.now() - t0)
  await ctx.close()
} finally {
  server.kill('SIGTERM')
  await new Promise((r) => server.once('exit', r))
  upstream.close()
  rmSync(work, { recursive: true, force: true })
}
console.log(JSON.stringify({ keys: total, invalid, ...figures }, null, 2))
