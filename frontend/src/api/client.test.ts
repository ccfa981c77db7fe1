import { describe, expect, it, vi } from 'vitest'
import { ApiError, createClient } from './client'

function respond(status: number, body: unknown) {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

function client(answer: (url: string, init: RequestInit) => Response, opts: { key?: string | null; lang?: string; onUnauthorized?: () => void } = {}) {
  const calls: { url: string; init: RequestInit }[] = []
  const fetch = vi.fn(async (url: any, init: any) => {
    calls.push({ url: String(url), init })
    return answer(String(url), init)
  })
  const c = createClient({ key: () => (opts.key === undefined ? 'admin-key' : opts.key), lang: () => opts.lang ?? 'zh-CN', onUnauthorized: opts.onUnauthorized, fetch: fetch as any })
  return { c, calls }
}

describe('api client', () => {
  it('unwraps the success envelope and sends the key and the language shown', async () => {
    const { c, calls } = client(() => respond(200, { code: 0, message: '成功', data: [{ id: 1 }] }), { lang: 'ja-JP' })
    expect(await c.get('/api/groups', { page: 2, status: '', x: undefined })).toEqual([{ id: 1 }])
    const h = calls[0].init.headers as Record<string, string>
    expect(calls[0].url).toBe('/api/groups?page=2')
    expect(h['Accept-Language']).toBe('ja-JP')
    expect(h.Authorization).toBe('Bearer admin-key')
  })

  it('keeps the message of the envelope for routes that say what they did', async () => {
    const { c, calls } = client(() => respond(200, { code: 0, message: '3 keys restored' }))
    const env = await c.requestEnvelope('POST', '/api/keys/restore-all-invalid', { body: { group_id: 1 } })
    expect(env).toEqual({ message: '3 keys restored', data: undefined })
    expect(calls[0].init.body).toBe('{"group_id":1}')
    expect((calls[0].init.headers as Record<string, string>)['Content-Type']).toBe('application/json')
  })

  it('turns the error envelope into an ApiError with its code and fields', async () => {
    const { c } = client(() =>
      respond(400, { code: 'VALIDATION_ERROR', message: 'request_timeout: must be at least 1', fields: [{ field: 'request_timeout', message: 'must be at least 1' }] }),
    )
    const err = await c.put('/api/settings', { request_timeout: 0 }).catch((e: ApiError) => e) as ApiError
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(400)
    expect(err.code).toBe('VALIDATION_ERROR')
    expect(err.message).toBe('request_timeout: must be at least 1')
    expect(err.fieldMessage('request_timeout')).toBe('must be at least 1')
    expect(err.fieldMessage('connect_timeout')).toBeUndefined()
  })

  it('finds the field of a nested API field name', () => {
    const e = new ApiError(400, 'VALIDATION_FAILED', 'x', [{ field: 'upstreams[1].url', message: 'bad url' }])
    expect(e.fieldMessage('upstreams')).toBe('bad url')
  })

  it('reports the plain 404 of an unknown route with its message', async () => {
    const { c } = client(() => respond(404, { error: 'Not Found' }))
    const err = await c.post('/api/import/gptload').catch((e: ApiError) => e) as ApiError
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(404)
    expect(err.code).toBe('NOT_FOUND')
    expect(err.message).toBe('Not Found')
  })

  it('reports a body that is not JSON, and a network failure', async () => {
    const { c } = client(() => new Response('bad gateway', { status: 502 }))
    const err = await c.get('/api/groups').catch((e: ApiError) => e) as ApiError
    expect(err.code).toBe('HTTP_502')
    expect(err.message).toBe('bad gateway')
    const { c: down } = client(() => {
      throw new TypeError('Failed to fetch')
    })
    const e2 = await down.get('/api/groups').catch((e: ApiError) => e) as ApiError
    expect(e2.code).toBe('NETWORK_ERROR')
  })

  it('refuses a 200 that is not the success envelope', async () => {
    const { c } = client(() => respond(200, '<html>'))
    await expect(c.get('/api/groups')).rejects.toMatchObject({ code: 'BAD_RESPONSE' })
  })

  it('tells the app when the admin key is refused', async () => {
    const onUnauthorized = vi.fn()
    const { c } = client(() => respond(401, { code: 'UNAUTHORIZED', message: 'Authentication failed' }), { onUnauthorized })
    await expect(c.get('/api/groups')).rejects.toMatchObject({ status: 401, code: 'UNAUTHORIZED' })
    expect(onUnauthorized).toHaveBeenCalledOnce()
  })

  it('sends no Authorization header when logged out', async () => {
    const { c, calls } = client(() => respond(200, { code: 0, message: '', data: null }), { key: null })
    await c.get('/api/groups')
    expect((calls[0].init.headers as Record<string, string>).Authorization).toBeUndefined()
  })

  it('logs in through the login route', async () => {
    const { c, calls } = client((_u, init) => {
      const key = JSON.parse(String(init.body)).auth_key
      return key === 'good' ? respond(200, { success: true, message: 'ok' }) : respond(401, { success: false, message: 'no' })
    })
    expect(await c.login('good')).toBe(true)
    expect(await c.login('bad')).toBe(false)
    expect((calls[0].init.headers as Record<string, string>).Authorization).toBeUndefined()
  })

  it('sends a form as it is, without a JSON content type', async () => {
    const { c, calls } = client(() => respond(200, { code: 0, message: '', data: { is_running: true } }))
    const fd = new FormData()
    fd.set('group_id', '1')
    await c.request('POST', '/api/keys/add-async', { form: fd })
    expect(calls[0].init.body).toBe(fd)
    expect((calls[0].init.headers as Record<string, string>)['Content-Type']).toBeUndefined()
  })

  it('builds download links with the key in the query', () => {
    const { c } = client(() => respond(200, {}))
    expect(c.downloadUrl('/api/keys/export', { group_id: 3, status: 'all' })).toBe('/api/keys/export?group_id=3&status=all&key=admin-key')
  })
})
