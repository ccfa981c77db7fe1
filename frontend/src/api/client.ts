// The admin API client: one place that adds the admin key and the language the user
// sees, unwraps the success envelope and turns every failure into an ApiError that
// carries the API's code, its message and the fields it names.

export interface FieldError {
  field: string
  message: string
}

export class ApiError extends Error {
  status: number
  code: string
  fields: FieldError[]
  constructor(status: number, code: string, message: string, fields: FieldError[] = []) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.fields = fields
  }
  /** The message the API gave for a field (or one of its sub-fields), if any. */
  fieldMessage(field: string): string | undefined {
    const hit = this.fields.find((f) => f.field === field || f.field.startsWith(field + '.') || f.field.startsWith(field + '['))
    return hit?.message
  }
}

export type Query = Record<string, string | number | boolean | undefined | null>

export interface RequestOptions {
  query?: Query
  body?: unknown
  form?: FormData
  signal?: AbortSignal
}

export interface ClientOptions {
  /** The admin key, or null when logged out. */
  key: () => string | null
  /** The Accept-Language tag of the language shown. */
  lang: () => string
  /** Called when the API refuses the admin key (401). */
  onUnauthorized?: () => void
  fetch?: typeof fetch
  base?: string
}

export function buildQuery(query?: Query): string {
  if (!query) return ''
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue
    p.set(k, String(v))
  }
  const s = p.toString()
  return s ? '?' + s : ''
}

export interface Client {
  request<T>(method: string, path: string, opts?: RequestOptions): Promise<T>
  /** The whole success envelope, for routes whose message says what was done. */
  requestEnvelope<T>(method: string, path: string, opts?: RequestOptions): Promise<{ message: string; data: T }>
  get<T>(path: string, query?: Query): Promise<T>
  post<T>(path: string, body?: unknown): Promise<T>
  put<T>(path: string, body?: unknown): Promise<T>
  del<T>(path: string): Promise<T>
  /** POST /api/auth/login: true when the key is the admin key. */
  login(key: string): Promise<boolean>
  /** A URL that downloads with the key in the query (exports), same origin. */
  downloadUrl(path: string, query?: Query): string
}

export function createClient(o: ClientOptions): Client {
  const doFetch = o.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a))
  const base = o.base ?? ''

  function headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = { 'Accept-Language': o.lang(), Accept: 'application/json' }
    const key = o.key()
    if (key) h.Authorization = 'Bearer ' + key
    if (json) h['Content-Type'] = 'application/json'
    return h
  }

  async function send(method: string, path: string, opts: RequestOptions = {}): Promise<{ message: string; data: any }> {
    const json = opts.body !== undefined && !opts.form
    let res: Response
    try {
      res = await doFetch(base + path + buildQuery(opts.query), {
        method,
        headers: headers(json),
        body: opts.form ?? (json ? JSON.stringify(opts.body) : undefined),
        signal: opts.signal,
      })
    } catch (e) {
      if ((e as Error)?.name === 'AbortError') throw e
      throw new ApiError(0, 'NETWORK_ERROR', (e as Error)?.message || 'network error')
    }
    const text = await res.text()
    let payload: any = undefined
    try {
      payload = text ? JSON.parse(text) : undefined
    } catch {
      payload = undefined
    }
    if (!res.ok) {
      if (res.status === 401) o.onUnauthorized?.()
      if (payload && typeof payload.code === 'string') {
        throw new ApiError(res.status, payload.code, String(payload.message ?? ''), Array.isArray(payload.fields) ? payload.fields : [])
      }
      if (payload && typeof payload.error === 'string') {
        throw new ApiError(res.status, res.status === 404 ? 'NOT_FOUND' : 'ERROR', payload.error)
      }
      throw new ApiError(res.status, 'HTTP_' + res.status, text.trim() || res.statusText || 'HTTP ' + res.status)
    }
    if (!payload || payload.code !== 0) {
      throw new ApiError(res.status, 'BAD_RESPONSE', 'unexpected answer from the server')
    }
    return { message: String(payload.message ?? ''), data: payload.data }
  }

  const c: Client = {
    async request<T>(method: string, path: string, opts?: RequestOptions) {
      return (await send(method, path, opts)).data as T
    },
    async requestEnvelope<T>(method: string, path: string, opts?: RequestOptions) {
      return (await send(method, path, opts)) as { message: string; data: T }
    },
    get: (path, query) => c.request('GET', path, { query }),
    post: (path, body) => c.request('POST', path, { body: body ?? {} }),
    put: (path, body) => c.request('PUT', path, { body: body ?? {} }),
    del: (path) => c.request('DELETE', path),
    async login(key: string) {
      const res = await doFetch(base + '/api/auth/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Accept-Language': o.lang() },
        body: JSON.stringify({ auth_key: key }),
      })
      if (res.status === 401) return false
      const body = await res.json().catch(() => ({}))
      if (!res.ok) throw new ApiError(res.status, 'LOGIN_FAILED', String(body?.message ?? res.statusText))
      return body?.success === true
    },
    downloadUrl(path: string, query?: Query) {
      return base + path + buildQuery({ ...query, key: o.key() ?? '' })
    },
  }
  return c
}
