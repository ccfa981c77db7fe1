import type { ChannelType, ConfigOption, Group, HeaderRule, Upstream } from '../api/types'

export const channelTypes: ChannelType[] = ['openai', 'openai-response', 'anthropic', 'gemini']

/** Placeholders of API.md 2.3: the channel's usual upstream, test model and endpoint. */
export const channelDefaults: Record<ChannelType, { upstream: string; model: string; endpoint: string }> = {
  openai: { upstream: 'https://api.openai.com', model: 'gpt-4.1-nano', endpoint: '/v1/chat/completions' },
  'openai-response': { upstream: 'https://api.openai.com', model: 'gpt-4.1-nano', endpoint: '/v1/responses' },
  anthropic: { upstream: 'https://api.anthropic.com', model: 'claude-3-haiku-20240307', endpoint: '/v1/messages' },
  gemini: { upstream: 'https://generativelanguage.googleapis.com', model: 'gemini-2.0-flash-lite', endpoint: '' },
}

export interface Pair {
  from: string
  to: string
}
export interface Override {
  key: string
  value: string | number | boolean | null
}

/** The group form's model: everything as the inputs hold it. */
export interface GroupFormModel {
  name: string
  display_name: string
  description: string
  group_type: 'standard' | 'aggregate'
  channel_type: ChannelType
  sort: number
  upstreams: Upstream[]
  test_model: string
  validation_endpoint: string
  proxy_keys: string
  config: Override[]
  header_rules: HeaderRule[]
  redirects: Pair[]
  model_redirect_strict: boolean
  param_overrides: string
}

export function emptyForm(): GroupFormModel {
  return {
    name: '', display_name: '', description: '', group_type: 'standard', channel_type: 'openai', sort: 0,
    upstreams: [{ url: '', weight: 1 }], test_model: '', validation_endpoint: '', proxy_keys: '',
    config: [], header_rules: [], redirects: [], model_redirect_strict: false, param_overrides: '',
  }
}

export function formFromGroup(g: Group): GroupFormModel {
  return {
    name: g.name,
    display_name: g.display_name,
    description: g.description,
    group_type: g.group_type,
    channel_type: g.channel_type,
    sort: g.sort,
    upstreams: g.upstreams?.length ? g.upstreams.map((u) => ({ ...u })) : [{ url: '', weight: 1 }],
    test_model: g.test_model === '-' ? '' : g.test_model,
    validation_endpoint: g.validation_endpoint,
    proxy_keys: g.proxy_keys,
    config: Object.entries(g.config ?? {}).map(([key, value]) => ({ key, value: value as Override['value'] })),
    header_rules: (g.header_rules ?? []).map((r) => ({ ...r })),
    redirects: Object.entries(g.model_redirect_rules ?? {}).map(([from, to]) => ({ from, to })),
    model_redirect_strict: g.model_redirect_strict,
    param_overrides: g.param_overrides && Object.keys(g.param_overrides).length ? JSON.stringify(g.param_overrides, null, 2) : '',
  }
}

/** Field errors by the API's field names (name, upstreams, config, ...). */
export type FieldErrors = Record<string, string>

/** Translates an error id into the page's language. */
export type Tr = (id: string, args?: Record<string, unknown>) => string

/**
 * Checks the form as the API will, so that most mistakes show on their field before a
 * request, and builds the request body. The API stays the judge: its field errors are
 * shown the same way.
 */
export function buildGroupPayload(m: GroupFormModel, options: ConfigOption[], tr: Tr, creating: boolean): { payload: Record<string, unknown>; errors: FieldErrors } {
  const errors: FieldErrors = {}
  const aggregate = m.group_type === 'aggregate'
  const name = m.name.trim()
  if (!/^[a-z0-9_-]{1,100}$/.test(name)) errors.name = tr('form.err.name')
  const payload: Record<string, unknown> = {
    name,
    display_name: m.display_name.trim(),
    description: m.description.trim(),
    channel_type: m.channel_type,
    sort: Number(m.sort) || 0,
    proxy_keys: m.proxy_keys.trim(),
  }
  if (creating) payload.group_type = m.group_type
  if (!aggregate) {
    const ups = m.upstreams.map((u) => ({ url: u.url.trim(), weight: Number(u.weight) }))
    if (!ups.length) errors.upstreams = tr('form.err.upstreamRequired')
    else if (ups.some((u) => !/^https?:\/\/\S+$/.test(u.url))) errors.upstreams = tr('form.err.upstreamUrl')
    else if (ups.some((u) => !Number.isInteger(u.weight) || u.weight < 0)) errors.upstreams = tr('form.err.upstreamWeight')
    else if (!ups.some((u) => u.weight > 0)) errors.upstreams = tr('form.err.upstreamPositive')
    payload.upstreams = ups
    const model = m.test_model.trim()
    if (!model) errors.test_model = tr('form.err.testModel')
    payload.test_model = model
    const ep = m.channel_type === 'gemini' ? '' : m.validation_endpoint.trim()
    if (ep && (!ep.startsWith('/') || ep.includes('://'))) errors.validation_endpoint = tr('form.err.endpoint')
    payload.validation_endpoint = ep
  }
  // Overrides: numbers where the setting is a number, booleans where it is one.
  const config: Record<string, unknown> = {}
  for (const o of m.config) {
    if (!o.key) continue
    const opt = options.find((x) => x.key === o.key)
    if (o.value === null || o.value === '') continue
    if (opt && typeof opt.default_value === 'number') {
      const n = typeof o.value === 'number' ? o.value : Number(String(o.value).trim())
      if (!Number.isInteger(n)) {
        errors.config = tr('form.err.configNumber', { name: opt.name })
        continue
      }
      config[o.key] = n
    } else if (opt && typeof opt.default_value === 'boolean') {
      config[o.key] = o.value === true || o.value === 'true'
    } else {
      config[o.key] = String(o.value)
    }
  }
  payload.config = config
  const seen = new Set<string>()
  const rules: HeaderRule[] = []
  for (const r of m.header_rules) {
    const key = r.key.trim()
    if (!key) continue
    const canon = key.toLowerCase()
    if (seen.has(canon)) errors.header_rules = tr('form.err.headerDuplicate', { name: key })
    seen.add(canon)
    rules.push({ key, value: r.action === 'remove' ? '' : r.value, action: r.action })
  }
  payload.header_rules = rules
  if (!aggregate) {
    const redirects: Record<string, string> = {}
    for (const p of m.redirects) {
      const from = p.from.trim()
      const to = p.to.trim()
      if (!from && !to) continue
      if (!from || !to) errors.model_redirect_rules = tr('form.err.redirectBlank')
      else redirects[from] = to
    }
    payload.model_redirect_rules = redirects
    payload.model_redirect_strict = m.model_redirect_strict
  }
  const po = m.param_overrides.trim()
  if (po) {
    try {
      const v = JSON.parse(po)
      if (!v || typeof v !== 'object' || Array.isArray(v)) errors.param_overrides = tr('form.err.paramObject')
      else payload.param_overrides = v
    } catch (e) {
      errors.param_overrides = tr('form.err.paramJson', { detail: (e as Error).message })
    }
  } else {
    payload.param_overrides = {}
  }
  return { payload, errors }
}

/** The form field an API field name belongs to (upstreams[0].url → upstreams). */
export function formField(apiField: string): string {
  const m = /^[a-z_]+/.exec(apiField)
  return m ? m[0] : apiField
}
