import { describe, expect, it } from 'vitest'
import { buildGroupPayload, emptyForm, formField, formFromGroup } from './groupForm'
import type { ConfigOption, Group } from '../api/types'

const tr = (id: string, args?: Record<string, unknown>) => id + (args ? JSON.stringify(args) : '')
const options: ConfigOption[] = [
  { key: 'max_retries', name: 'Max retries', description: '', default_value: 3 },
  { key: 'enable_request_body_logging', name: 'Body logging', description: '', default_value: false },
  { key: 'proxy_url', name: 'Proxy URL', description: '', default_value: '' },
]

function valid() {
  const f = emptyForm()
  f.name = 'my-group'
  f.upstreams = [{ url: 'https://api.example.com', weight: 1 }]
  f.test_model = 'gpt-4.1-nano'
  return f
}

describe('group form', () => {
  it('builds the body of a valid standard group', () => {
    const f = valid()
    f.display_name = '  Mine '
    f.config = [{ key: 'max_retries', value: 5 }, { key: 'enable_request_body_logging', value: true }, { key: 'proxy_url', value: 'http://p:1' }, { key: '', value: 1 }]
    f.header_rules = [{ key: 'X-Foo', value: '${CLIENT_IP}', action: 'set' }, { key: 'X-Bar', value: 'ignored', action: 'remove' }, { key: ' ', value: '', action: 'set' }]
    f.redirects = [{ from: 'gpt-4', to: 'gpt-4.1' }, { from: '', to: '' }]
    f.model_redirect_strict = true
    f.param_overrides = '{"temperature": 0.2}'
    const { payload, errors } = buildGroupPayload(f, options, tr, true)
    expect(errors).toEqual({})
    expect(payload).toMatchObject({
      name: 'my-group', display_name: 'Mine', group_type: 'standard', channel_type: 'openai',
      upstreams: [{ url: 'https://api.example.com', weight: 1 }], test_model: 'gpt-4.1-nano', validation_endpoint: '',
      config: { max_retries: 5, enable_request_body_logging: true, proxy_url: 'http://p:1' },
      header_rules: [{ key: 'X-Foo', value: '${CLIENT_IP}', action: 'set' }, { key: 'X-Bar', value: '', action: 'remove' }],
      model_redirect_rules: { 'gpt-4': 'gpt-4.1' }, model_redirect_strict: true, param_overrides: { temperature: 0.2 },
    })
  })

  it('names the field of each mistake', () => {
    const f = valid()
    f.name = 'Has Spaces'
    f.upstreams = [{ url: 'ftp://x', weight: 1 }]
    f.test_model = ' '
    f.validation_endpoint = 'http://x/v1'
    f.config = [{ key: 'max_retries', value: 'three' }]
    f.header_rules = [{ key: 'x-a', value: '1', action: 'set' }, { key: 'X-A', value: '2', action: 'set' }]
    f.redirects = [{ from: 'a', to: '' }]
    f.param_overrides = '[1, 2]'
    const { errors } = buildGroupPayload(f, options, tr, true)
    expect(Object.keys(errors).sort()).toEqual(
      ['config', 'header_rules', 'model_redirect_rules', 'name', 'param_overrides', 'test_model', 'upstreams', 'validation_endpoint'].sort(),
    )
    expect(errors.upstreams).toBe('form.err.upstreamUrl')
    expect(errors.param_overrides).toBe('form.err.paramObject')
  })

  it('checks upstream weights', () => {
    for (const [ups, want] of [
      [[], 'form.err.upstreamRequired'],
      [[{ url: 'https://a', weight: -1 }], 'form.err.upstreamWeight'],
      [[{ url: 'https://a', weight: 1.5 }], 'form.err.upstreamWeight'],
      [[{ url: 'https://a', weight: 0 }, { url: 'https://b', weight: 0 }], 'form.err.upstreamPositive'],
    ] as const) {
      const f = valid()
      f.upstreams = ups.map((u) => ({ ...u }))
      expect(buildGroupPayload(f, options, tr, true).errors.upstreams).toBe(want)
    }
  })

  it('reports JSON that does not parse', () => {
    const f = valid()
    f.param_overrides = '{"a": '
    expect(buildGroupPayload(f, options, tr, true).errors.param_overrides).toMatch(/^form\.err\.paramJson/)
  })

  it('leaves out what an aggregate cannot have, and gemini the validation endpoint', () => {
    const f = valid()
    f.group_type = 'aggregate'
    f.upstreams = []
    f.test_model = ''
    f.redirects = [{ from: 'a', to: 'b' }]
    const { payload, errors } = buildGroupPayload(f, options, tr, true)
    expect(errors).toEqual({})
    expect(payload.upstreams).toBeUndefined()
    expect(payload.model_redirect_rules).toBeUndefined()
    const g = valid()
    g.channel_type = 'gemini'
    g.validation_endpoint = 'not a path'
    const out = buildGroupPayload(g, options, tr, false)
    expect(out.errors).toEqual({})
    expect(out.payload.validation_endpoint).toBe('')
    expect(out.payload.group_type).toBeUndefined()
  })

  it('round-trips a group from the API', () => {
    const g: Group = {
      id: 7, name: 'g', endpoint: 'http://h/proxy/g', display_name: 'G', description: 'd', group_type: 'standard',
      upstreams: [{ url: 'https://u', weight: 2 }], channel_type: 'anthropic', sort: 3, test_model: 'm', validation_endpoint: '/v1/messages',
      param_overrides: { top_p: 1 }, model_redirect_rules: { a: 'b' }, model_redirect_strict: true, config: { max_retries: 1 },
      header_rules: [{ key: 'X-A', value: 'v', action: 'set' }], proxy_keys: 'k1,k2', last_validated_at: null, created_at: '', updated_at: '',
    }
    const { payload, errors } = buildGroupPayload(formFromGroup(g), options, tr, false)
    expect(errors).toEqual({})
    expect(payload).toEqual({
      name: 'g', display_name: 'G', description: 'd', channel_type: 'anthropic', sort: 3, proxy_keys: 'k1,k2',
      upstreams: [{ url: 'https://u', weight: 2 }], test_model: 'm', validation_endpoint: '/v1/messages', config: { max_retries: 1 },
      header_rules: [{ key: 'X-A', value: 'v', action: 'set' }], model_redirect_rules: { a: 'b' }, model_redirect_strict: true,
      param_overrides: { top_p: 1 },
    })
  })

  it('maps API field names to the form fields', () => {
    expect(formField('upstreams[0].url')).toBe('upstreams')
    expect(formField('config.max_retries')).toBe('config')
    expect(formField('name')).toBe('name')
  })
})
