// End-to-end tests of the dashboard in Debian's Chromium, against the real binary and a
// fake upstream on loopback. Run by `npm run e2e` (go tool task test runs it) with BIN
// naming the binary, built with the dashboard embedded.
//
// Without /usr/bin/chromium (or CHROMIUM) the tests skip with a message saying so.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { callAdmin, freePort, waitHealthy } from './node.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../..')
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium'
const bin = resolve(root, process.env.BIN || 'bin/gpt-load')
const shotDir = process.env.SCREENSHOTS_DIR ? resolve(root, process.env.SCREENSHOTS_DIR) : join(here, 'out')
const ADMIN = 'e2e-Operator-Kx-9081726354-Xyz!'
const PROXY_KEY = 'sk-proxy-e2e-Abc-0123456789!'
const skip = !existsSync(chromiumPath)
  ? `Chromium not found at ${chromiumPath}: install it (apt-get install -y chromium) to run the browser tests`
  : !existsSync(bin)
    ? `binary not found at ${bin}: build it with the dashboard (go tool task build) or set BIN`
    : false

let upstream, server, browser, page, base, work
const upstreamCalls = { chat: 0, validate: 0 }
const consoleErrors = []
const foreignRequests = []
// Console errors the browser prints for answers a step expects (a 400 for a bad setting).
let allowedConsole = []

// The fake provider: an OpenAI chat completion for keys that start with sk-good, a 401
// for every other key.
function startUpstream() {
  return new Promise((res) => {
    const s = createServer((req, resp) => {
      let body = ''
      req.on('data', (c) => (body += c))
      req.on('end', () => {
        const key = (req.headers.authorization || '').replace(/^Bearer /, '')
        const isValidation = body.includes('"content":"hi"')
        if (isValidation) upstreamCalls.validate++
        else upstreamCalls.chat++
        if (!key.startsWith('sk-good')) {
          resp.writeHead(401, { 'Content-Type': 'application/json' })
          resp.end(JSON.stringify({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error' } }))
          return
        }
        resp.writeHead(200, { 'Content-Type': 'application/json' })
        resp.end(
          JSON.stringify({
            id: 'chatcmpl-e2e', object: 'chat.completion', created: 1, model: 'gpt-e2e',
            choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
          }),
        )
      })
    })
    s.listen(0, '127.0.0.1', () => res(s))
  })
}

const adminApi = (method, path, body) => callAdmin(base, ADMIN, method, path, body)

async function pickOption(selectLocator, text) {
  await selectLocator.click()
  await page.locator('.n-base-select-option', { hasText: text }).first().click()
}

async function shot(name) {
  mkdirSync(shotDir, { recursive: true })
  await page.screenshot({ path: join(shotDir, name + '.png'), fullPage: false })
}

before(async () => {
  if (skip) return
  work = mkdtempSync(join(tmpdir(), 'gpt-load-e2e-'))
  upstream = await startUpstream()
  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  server = spawn(bin, [], {
    env: { ...process.env, DATA_DIR: join(work, 'data'), PORT: String(port), HOST: '127.0.0.1', AUTH_KEY: ADMIN, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  await waitHealthy(base, 60_000)
  const { chromium } = await import('playwright-core')
  browser = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 860 },
    locale: 'en-US',
    colorScheme: 'light',
  })
  page = browser.pages()[0] ?? (await browser.newPage())
  page.setDefaultTimeout(15_000)
  const origin = new URL(base).origin
  page.on('request', (r) => {
    const u = r.url()
    if (u.startsWith('data:') || u.startsWith('blob:')) return
    if (new URL(u).origin !== origin) foreignRequests.push(u)
  })
  page.on('console', (m) => {
    if (m.type() !== 'error') return
    if (allowedConsole.some((re) => re.test(m.text()))) return
    consoleErrors.push(m.text())
  })
  page.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message))
})

after(async () => {
  await browser?.close().catch(() => {})
  if (server) {
    server.kill('SIGTERM')
    await new Promise((r) => server.once('exit', r))
  }
  upstream?.close()
  if (work) rmSync(work, { recursive: true, force: true })
})

test('the dashboard, driven as a user in Chromium', { skip, timeout: 600_000 }, async (t) => {
  let cspHeader = ''

  await t.test('logged out, a page leads to the login and back', async () => {
    const resp = await page.goto(base + '/keys')
    cspHeader = resp.headers()['content-security-policy'] || ''
    assert.match(cspHeader, /default-src 'self'/)
    assert.match(cspHeader, /connect-src 'self'/)
    assert.match(cspHeader, /script-src 'self'(;|$)/)
    await page.waitForURL(/\/login\?redirect=%2Fkeys|\/login\?redirect=\/keys/)
    await shot('login-light')
    allowedConsole = [/status of 401/]
    await page.fill('[data-test=auth-key]', 'wrong-key')
    await page.click('[data-test=login]')
    await page.getByText('This is not the admin key').waitFor()
    allowedConsole = []
    await page.fill('[data-test=auth-key]', ADMIN)
    await page.click('[data-test=login]')
    await page.waitForURL(base + '/keys')
  })

  await t.test('create a group', async () => {
    await page.click('[data-test=create-group]')
    const form = page.locator('[data-test=group-form]')
    await form.waitFor()
    // A bad name and bad JSON show on their fields, before any request.
    await page.fill('[data-test=group-name]', 'Bad Name')
    await page.fill('[data-test=group-params]', '{not json')
    await page.click('[data-test=group-save]')
    await form.locator('.n-form-item-feedback--error, .n-form-item-feedback-wrapper').filter({ hasText: 'lower-case letters' }).first().waitFor()
    await form.getByText('Not valid JSON').waitFor()
    await page.fill('[data-test=group-name]', 'e2e')
    await page.fill('[data-test=group-display-name]', 'End to end')
    await page.fill('[data-test=upstream-url-0]', `http://127.0.0.1:${upstream.address().port}`)
    await page.fill('[data-test=group-test-model]', 'gpt-e2e')
    await page.fill('[data-test=group-proxy-keys]', PROXY_KEY)
    await page.fill('[data-test=group-params]', '{"temperature": 0.5}')
    await page.click('[data-test=group-save]')
    await form.waitFor({ state: 'hidden' })
    await page.locator('[data-test=group-list] li[data-group=e2e]').waitFor()
    await page.locator('[data-test=endpoint]', { hasText: '/proxy/e2e' }).waitFor()
    await page.locator('[data-example=curl]', { hasText: PROXY_KEY }).waitFor()
  })

  const goodKeys = Array.from({ length: 2000 }, (_, i) => `sk-good-${String(i).padStart(6, '0')}-e2e`)
  const badKey = 'sk-bad-000001-e2e'

  await t.test('import keys from a file and watch the progress bar finish', async () => {
    const file = join(work, 'keys.txt')
    writeFileSync(file, [...goodKeys, badKey].join('\n'))
    await page.click('[data-test=add-keys]')
    const dlg = page.locator('[data-test=add-dialog]')
    await dlg.getByText('File (.txt)').click()
    await dlg.locator('input[type=file]').setInputFiles(file)
    await page.click('[data-test=keys-submit]')
    const bar = page.locator('[data-test=task-progress]')
    await bar.waitFor()
    await page.locator('[data-test=task-progress][data-running=no]').waitFor({ timeout: 60_000 })
    await page.locator('[data-test=task-result]', { hasText: 'added: 2001' }).waitFor()
    await page.getByText('2001 keys').waitFor()
    // The bar survives a reload: the server keeps the task's state.
    await page.reload()
    await page.locator('[data-test=task-result]', { hasText: 'added: 2001' }).waitFor()
    await page.getByText('2001 keys').waitFor()
    await page.fill('[data-test=key-search]', 'sk-good-000042-e2e')
    await page.getByText('1 keys', { exact: true }).waitFor()
    await page.locator('[data-test=key-table] tbody tr').first().getByText('sk-g****-e2e').waitFor()
    await page.fill('[data-test=key-search]', '')
    await page.getByText('2001 keys').waitFor()
    await shot('keys-light')
  })

  await t.test('validation blacklists the bad key, and the user restores it', async () => {
    // One failed validation is enough to blacklist in this group.
    const groups = await adminApi('GET', '/api/groups')
    const g = groups.find((x) => x.name === 'e2e')
    await adminApi('PUT', `/api/groups/${g.id}`, { config: { blacklist_threshold: 1 } })
    await page.click('[data-test=bulk]')
    await page.locator('.n-dropdown-option', { hasText: 'Validate all keys' }).click()
    await page.locator('[data-test=task-result]', { hasText: 'invalid: 1' }).waitFor({ timeout: 60_000 })
    await pickOption(page.locator('[data-test=key-status]'), 'Invalid')
    await page.getByText('1 keys', { exact: true }).waitFor()
    await page.locator('[data-test=key-table] tbody tr', { hasText: 'sk-b' }).waitFor()
    await page.click('[data-test=restore-one]')
    await page.getByText('0 keys', { exact: true }).waitFor()
    await pickOption(page.locator('[data-test=key-status]'), 'Active')
    await page.getByText('2001 keys').waitFor()
  })

  await t.test('notes, disable and enable, and dragging groups into order', async () => {
    const firstRow = page.locator('[data-test=key-table] tbody tr').first()
    await firstRow.locator('a.notes').click()
    await page.fill('[data-test=notes-input]', 'rotating next week')
    await page.locator('.n-dialog .n-button--primary-type').click()
    await page.locator('[data-test=key-table] tbody tr', { hasText: 'rotating next week' }).waitFor()
    await firstRow.locator('.n-checkbox').click()
    await page.getByText('1 selected').waitFor()
    await page.click('[data-test=disable-selected]')
    await page.locator('[data-test=key-table] tbody tr', { hasText: 'Disabled' }).waitFor()
    await firstRow.locator('.n-checkbox').click()
    await page.click('[data-test=enable-selected]')
    await page.locator('[data-test=key-table] tbody tr', { hasText: 'Disabled' }).waitFor({ state: 'detached' })

    await adminApi('POST', '/api/groups', { name: 'second', channel_type: 'openai', test_model: 'm', upstreams: [{ url: 'http://127.0.0.1:9', weight: 1 }], sort: 5 })
    await page.reload()
    const names = () => page.locator('[data-test=group-list] li').evaluateAll((els) => els.map((e) => e.getAttribute('data-group')))
    // After the reload the list renders once the groups have loaded: wait for both.
    await page.locator('[data-test=group-list] li[data-group=second]').waitFor()
    await page.locator('[data-test=group-list] li[data-group=e2e]').waitFor()
    assert.deepEqual(await names(), ['e2e', 'second'])
    await page.locator('[data-test=group-list] li[data-group=second]').dragTo(page.locator('[data-test=group-list] li[data-group=e2e]'))
    for (let i = 0; i < 40 && (await names())[0] !== 'second'; i++) await page.waitForTimeout(100)
    assert.deepEqual(await names(), ['second', 'e2e'])
    // The page shows the new order at once; the API has it once the reorder is saved.
    let order = []
    for (let i = 0; i < 50; i++) {
      order = (await adminApi('GET', '/api/groups')).map((g) => g.name)
      if (order[0] === 'second') break
      await page.waitForTimeout(100)
    }
    assert.deepEqual(order, ['second', 'e2e'])
    await page.locator('[data-test=group-list] li[data-group=e2e]').click()
  })

  await t.test('proxied requests show on the dashboard and in the logs', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${base}/proxy/e2e/v1/chat/completions`, {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + PROXY_KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-e2e', messages: [{ role: 'user', content: 'hello ' + i }] }),
      })
      await r.text()
    }
    await page.click('a[data-nav="/logs"]')
    await page.waitForURL(base + '/logs')
    const rows = page.locator('[data-test=logs-table] tbody tr', { hasText: 'gpt-e2e' })
    for (let i = 0; i < 40 && (await rows.count()) < 6; i++) {
      await page.click('[data-test=logs-search]')
      await page.waitForTimeout(250)
    }
    assert.ok((await rows.count()) >= 6, 'six proxied requests in the logs')
    await rows.first().click()
    await page.locator('[data-test=log-detail]').getByText('/v1/chat/completions').first().waitFor()
    await shot('logs-light')
    await page.keyboard.press('Escape')
    await page.click('a[data-nav="/"]')
    await page.waitForURL(base + '/')
    const requests = page.locator('[data-card=requests] .n-statistic-value')
    for (let i = 0; i < 40; i++) {
      const v = Number((await requests.textContent().catch(() => '0'))?.trim() || 0)
      if (v >= 6) break
      await page.waitForTimeout(250)
      await page.reload()
    }
    assert.ok(Number((await requests.textContent())?.trim()) >= 6, 'the requests card counts the proxied requests')
    await page.locator('[data-card=keys] .n-statistic-value', { hasText: '2001' }).waitFor()
    await page.locator('canvas').first().waitFor()
    // This node runs without ENCRYPTION_KEY: the page says keys rest in clear, not that they match.
    await page.locator('[data-test=encryption]', { hasText: 'ENCRYPTION_KEY is not set' }).waitFor()
    await shot('dashboard-light')
  })

  await t.test('settings: a bad value shows on its field, a good one saves', async () => {
    await page.click('a[data-nav="/settings"]')
    const field = page.locator('[data-setting=request_log_retention_days]')
    await field.waitFor()
    allowedConsole = [/status of 400/]
    await page.fill('[data-test=setting-request_log_retention_days]', '-5')
    await page.click('[data-test=settings-save]')
    await field.locator('.n-form-item-feedback-wrapper').filter({ hasText: /0|minimum|least/ }).waitFor()
    assert.ok(await field.locator('.n-form-item-feedback--error, .n-form-item-blank--error, .n-input--error-status, .n-input-number').count())
    allowedConsole = []
    await page.fill('[data-test=setting-request_log_retention_days]', '14')
    await page.click('[data-test=settings-save]')
    await page.waitForTimeout(300)
    const cats = await adminApi('GET', '/api/settings')
    const v = cats.flatMap((c) => c.settings).find((s) => s.key === 'request_log_retention_days').value
    assert.equal(v, 14)
    await shot('settings-light')
  })

  await t.test('every page loads on reload, in light and dark', async () => {
    for (const [path, name] of [['/', 'dashboard'], ['/keys', 'keys'], ['/logs', 'logs'], ['/usage', 'usage'], ['/settings', 'settings'], ['/audit', 'audit'], ['/import', 'import']]) {
      await page.goto(base + path)
      await page.waitForURL(base + path)
      await page.locator('h1.page-title').waitFor()
      await page.waitForTimeout(300)
      if (!['dashboard', 'logs', 'settings', 'keys'].includes(name)) await shot(name + '-light')
    }
    await pickOption(page.locator('[data-test=theme]'), 'Dark')
    // The sum of the body's background colour channels, once it is dark (the background
    // fades over, and after a reload the page must first start): up to 10 s.
    const darkness = async () => {
      let sum = 765
      for (let i = 0; i < 25 && sum >= 150; i++) {
        await page.waitForTimeout(400)
        const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor)
        sum = bg.match(/\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0)
      }
      return sum
    }
    assert.ok((await darkness()) < 150, 'dark background')
    for (const [path, name] of [['/', 'dashboard'], ['/keys', 'keys'], ['/logs', 'logs'], ['/usage', 'usage'], ['/settings', 'settings'], ['/audit', 'audit'], ['/import', 'import']]) {
      await page.goto(base + path)
      await page.locator('h1.page-title').waitFor()
      await page.waitForTimeout(500)
      await shot(name + '-dark')
    }
    // The theme is remembered.
    await page.reload()
    assert.ok((await darkness()) < 150, 'dark background after a reload')
    await pickOption(page.locator('[data-test=theme]'), 'Light')
  })

  await t.test('a phone-sized screen: no page wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 })
    for (const path of ['/', '/keys', '/logs', '/settings']) {
      await page.goto(base + path)
      await page.locator('h1.page-title').waitFor()
      await page.waitForTimeout(300)
      const wide = await page.evaluate(() => document.documentElement.scrollWidth)
      assert.ok(wide <= 392, `${path} is ${wide}px wide on a 390px screen`)
      if (path === '/keys') await shot('keys-phone')
    }
    await page.setViewportSize({ width: 1280, height: 860 })
  })

  await t.test('the import page shows the API answer to a bad upload', async () => {
    await page.goto(base + '/import')
    allowedConsole = [/status of 4\d\d/]
    const f = join(work, 'not-a-db.db')
    writeFileSync(f, 'this is not a database')
    await page.locator('[data-test=import-file] input[type=file]').setInputFiles(f)
    await page.click('[data-test=import-submit]')
    await page.locator('[data-test=import-error]').waitFor()
    allowedConsole = []
  })

  await t.test('one language at a time', async () => {
    await page.goto(base + '/settings')
    await page.locator('[data-setting=request_log_retention_days]').waitFor()
    await pickOption(page.locator('[data-test=lang]'), '简体中文')
    await page.locator('a[data-nav="/settings"]', { hasText: '系统设置' }).waitFor()
    await page.locator('.n-card-header', { hasText: /[\u4e00-\u9fff]/ }).first().waitFor()
    await page.waitForLoadState('networkidle')
    const text = await page.locator('body').innerText()
    for (const english of ['Dashboard', 'Settings', 'Log out', 'Save', 'Basic', 'Request timeout', 'Sort order']) {
      assert.ok(!text.includes(english), `English "${english}" on the Chinese settings page`)
    }
    await page.goto(base + '/keys')
    await page.locator('[data-test=key-table]').waitFor()
    const keysText = await page.locator('body').innerText()
    for (const english of ['Add keys', 'Restore', 'Status', 'Endpoint', 'keys']) {
      assert.ok(!keysText.includes(english), `English "${english}" on the Chinese keys page`)
    }
    await pickOption(page.locator('[data-test=lang]'), '日本語')
    await page.locator('a[data-nav="/keys"]', { hasText: 'キー管理' }).waitFor()
    await page.reload()
    await page.locator('a[data-nav="/keys"]', { hasText: 'キー管理' }).waitFor()
    await pickOption(page.locator('[data-test=lang]'), 'English')
    await page.locator('a[data-nav="/keys"]', { hasText: 'Keys' }).waitFor()
  })

  await t.test('a reload keeps the login; logout ends it', async () => {
    await page.goto(base + '/usage')
    await page.reload()
    await page.locator('h1.page-title', { hasText: 'Usage' }).waitFor()
    await page.click('[data-test=logout]')
    await page.waitForURL(/\/login/)
    await page.goto(base + '/logs')
    await page.waitForURL(/\/login\?redirect=/)
  })

  await t.test('the page talked to its own origin only, without console errors', () => {
    assert.deepEqual(foreignRequests, [])
    assert.deepEqual(consoleErrors, [])
    assert.ok(upstreamCalls.chat >= 6 && upstreamCalls.validate >= 2001, JSON.stringify(upstreamCalls))
  })
})
