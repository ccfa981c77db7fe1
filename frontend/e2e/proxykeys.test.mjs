// The proxy-keys page in Debian's Chromium, against the real binary: create a named key
// (its secret shown once, then used at /proxy), edit its limits, disable it, rotate it,
// delete it. Run by `npm run e2e` with BIN naming the binary, built with the dashboard.
//
// It skips with a message without Chromium, without the binary, and while the server has
// no /api/proxy-keys (GET answers 404).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { callAdmin, freePort, waitHealthy } from './node.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../..')
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium'
const bin = resolve(root, process.env.BIN || 'bin/gpt-load')
const ADMIN = 'e2e-Proxy-Keys-Admin-5647382910!'
const skip = !existsSync(chromiumPath)
  ? `Chromium not found at ${chromiumPath}: install it (apt-get install -y chromium) to run the browser tests`
  : !existsSync(bin)
    ? `binary not found at ${bin}: build it with the dashboard (go tool task build) or set BIN`
    : false

// An upstream that answers every chat with a small completion.
function startUpstream() {
  return new Promise((res) => {
    const s = createServer((req, resp) => {
      req.resume()
      req.on('end', () => {
        resp.writeHead(200, { 'Content-Type': 'application/json' })
        resp.end(JSON.stringify({
          id: 'c', object: 'chat.completion', created: 1, model: 'm',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
        }))
      })
    })
    s.listen(0, '127.0.0.1', () => res(s))
  })
}

test('the proxy-keys page, driven as a user in Chromium', { skip, timeout: 300_000 }, async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'gpt-load-e2e-pk-'))
  const upstream = await startUpstream()
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const server = spawn(bin, [], {
    env: { ...process.env, DATA_DIR: join(work, 'data'), PORT: String(port), HOST: '127.0.0.1', AUTH_KEY: ADMIN, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  let browser
  t.after(async () => {
    await browser?.close().catch(() => {})
    server.kill('SIGTERM')
    await new Promise((r) => server.once('exit', r))
    upstream.close()
    rmSync(work, { recursive: true, force: true })
  })
  await waitHealthy(base, 60_000)
  const probe = await fetch(base + '/api/proxy-keys', { headers: { Authorization: 'Bearer ' + ADMIN } })
  if (probe.status === 404) {
    t.skip('GET /api/proxy-keys answers 404: this binary does not manage named proxy keys yet')
    return
  }
  const adminApi = (method, path, body) => callAdmin(base, ADMIN, method, path, body)
  const g = await adminApi('POST', '/api/groups', {
    name: 'pk', channel_type: 'openai', test_model: 'm', upstreams: [{ url: `http://127.0.0.1:${upstream.address().port}`, weight: 1 }],
  })
  await adminApi('POST', '/api/keys/add-multiple', { group_id: g.id, keys_text: 'sk-up-1' })
  const chat = (key) => fetch(`${base}/proxy/pk/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' }, body: '{"model":"m","messages":[]}',
  }).then((r) => r.status)

  const { chromium } = await import('playwright-core')
  browser = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: chromiumPath, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
    viewport: { width: 1280, height: 860 }, locale: 'en-US',
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  page.setDefaultTimeout(15_000)
  const errors = []
  page.on('pageerror', (e) => errors.push(e.message))

  await page.goto(base + '/proxy-keys')
  await page.fill('[data-test=auth-key]', ADMIN)
  await page.click('[data-test=login]')
  await page.waitForURL(base + '/proxy-keys')
  const table = page.locator('[data-test=pk-table]')
  await table.waitFor()

  let secret = ''
  await t.test('create: the secret is shown once and works at /proxy', async () => {
    await page.click('[data-test=pk-create]')
    await page.fill('[data-test=pk-form-name]', 'browser-key')
    await page.fill('[data-test=pk-form-rpm]', '30')
    await page.click('[data-test=pk-form-save]')
    const value = page.locator('[data-test=pk-secret-value]')
    await value.waitFor()
    secret = (await value.textContent()).trim()
    assert.ok(secret.length > 16, 'a secret is shown')
    await page.click('[data-test=pk-secret-close]')
    await value.waitFor({ state: 'hidden' })
    await table.getByText('browser-key').waitFor()
    await table.getByText('30 req/min').waitFor()
    assert.equal(await page.getByText(secret).count(), 0, 'the secret is not shown again')
    assert.equal(await chat(secret), 200)
  })

  await t.test('edit the limits, then disable: the key is refused', async () => {
    await page.click('[data-test=pk-edit]')
    await page.fill('[data-test=pk-form-rpm]', '45')
    await page.click('[data-test=pk-form-save]')
    await table.getByText('45 req/min').waitFor()
    await page.click('[data-test=pk-enabled]')
    await assert.doesNotReject(async () => {
      for (let i = 0; (await chat(secret)) === 200; i++) {
        if (i > 50) throw new Error('the disabled key still works')
        await new Promise((r) => setTimeout(r, 100))
      }
    })
    await page.click('[data-test=pk-enabled]')
  })

  await t.test('rotate: the new secret works, the old one no longer', async () => {
    await page.click('[data-test=pk-rotate]')
    await page.locator('.n-dialog__action button').last().click()
    const value = page.locator('[data-test=pk-secret-value]')
    await value.waitFor()
    const rotated = (await value.textContent()).trim()
    assert.notEqual(rotated, secret)
    await page.click('[data-test=pk-secret-close]')
    assert.equal(await chat(rotated), 200)
    assert.notEqual(await chat(secret), 200)
    secret = rotated
  })

  await t.test('delete after confirming', async () => {
    await page.click('[data-test=pk-delete]')
    await page.locator('.n-dialog__action button').last().click()
    await table.getByText('browser-key').waitFor({ state: 'detached' })
    assert.notEqual(await chat(secret), 200)
    const left = await adminApi('GET', '/api/proxy-keys')
    assert.equal(left.filter((k) => k.source === 'named').length, 0)
  })

  assert.deepEqual(errors, [])
})
