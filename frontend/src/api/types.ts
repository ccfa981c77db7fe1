export interface Page<T> {
  items: T[]
  pagination: { page: number; page_size: number; total_items: number; total_pages: number; total_is_lower_bound?: boolean }
}

export interface Upstream {
  url: string
  weight: number
}
export interface HeaderRule {
  key: string
  value: string
  action: 'set' | 'remove'
}
export type ChannelType = 'openai' | 'openai-response' | 'gemini' | 'anthropic'

export interface Group {
  id: number
  name: string
  endpoint: string
  display_name: string
  description: string
  group_type: 'standard' | 'aggregate'
  upstreams: Upstream[]
  channel_type: ChannelType
  sort: number
  test_model: string
  validation_endpoint: string
  param_overrides: Record<string, unknown> | null
  model_redirect_rules: Record<string, string>
  model_redirect_strict: boolean
  config: Record<string, unknown> | null
  header_rules: HeaderRule[] | null
  proxy_keys: string
  last_validated_at: string | null
  created_at: string
  updated_at: string
}

export interface ConfigOption {
  key: string
  name: string
  description: string
  default_value: number | boolean | string
}

export interface GroupStats {
  key_stats: { total_keys: number; active_keys: number; invalid_keys: number }
  stats_24_hour: { total_requests: number; failed_requests: number; failure_rate: number }
  stats_7_day: { total_requests: number; failed_requests: number; failure_rate: number }
  stats_30_day: { total_requests: number; failed_requests: number; failure_rate: number }
}

export interface SubGroup {
  group: { id: number; name: string; display_name: string }
  weight: number
  total_keys: number
  active_keys: number
  invalid_keys: number
}

export interface Key {
  id: number
  key_value: string
  key_hash: string
  group_id: number
  status: 'active' | 'invalid'
  notes: string
  request_count: number
  failure_count: number
  last_used_at: string | null
  created_at: string
  updated_at: string
  cooldown_until: string | null
  last_error: string
  disabled: boolean
}

export interface TaskStatus {
  task_type: string
  is_running: boolean
  group_name?: string
  processed: number
  total: number
  result?: Record<string, number>
  error?: string
  started_at: string
  finished_at?: string
  duration_seconds?: number
}

export interface SettingInfo {
  key: string
  name: string
  value: number | boolean | string
  type: 'string' | 'int' | 'bool'
  default_value: string
  description: string
  category: string
  min_value?: number
  max_value?: number
  required: boolean
}
export interface SettingCategory {
  category_name: string
  settings: SettingInfo[]
}

export interface StatCard {
  value: number
  sub_value?: number
  sub_value_tip?: string
  trend: number
  trend_is_growth: boolean
}
export interface SecurityWarning {
  type: string
  message: string
  severity: string
  suggestion: string
}
export interface DashboardStats {
  key_count: StatCard
  rpm: StatCard
  request_count: StatCard
  error_rate: StatCard
  token_count?: StatCard
  security_warnings: SecurityWarning[] | null
}
export interface ChartData {
  labels: string[]
  datasets: { label: string; data: number[]; color: string }[]
}
export interface EncryptionStatus {
  has_mismatch: boolean
  scenario_type: string
  message: string
  suggestion: string
}

export interface RequestLog {
  id: string
  timestamp: string
  group_id: number
  group_name: string
  parent_group_id: number
  parent_group_name: string
  key_value: string
  key_hash: string
  model: string
  is_success: boolean
  source_ip: string
  status_code: number
  request_path: string
  duration_ms: number
  error_message: string
  user_agent: string
  request_type: 'retry' | 'final'
  upstream_addr: string
  is_stream: boolean
  request_body: string
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  proxy_key_fp: string
  proxy_key_name: string
}

export interface UsageFigures {
  requests: number
  failures: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}
export interface UsageItem extends UsageFigures {
  time?: string
  model?: string
  group_id?: number
  group_name?: string
  key_id?: number
  proxy_key_fp?: string
  proxy_key_name?: string
  /** A named proxy key, across its rotations. */
  proxy_key_id?: number
}
export interface Usage {
  from: string
  to: string
  by: string
  items: UsageItem[]
  totals: UsageFigures
}

export interface AuditItem {
  seq: number
  id: string
  time: string
  type: string
  actor: string
  node: string
  group_ids: number[]
  details: unknown
}

/** Tokens of the current UTC day and month; null where the key has no quota. */
export interface ProxyKeyTokens {
  daily_tokens: number | null
  monthly_tokens: number | null
}
/**
 * A proxy key of GET /api/proxy-keys: a named one (source "named", with an id), or one of
 * the comma-separated proxy_keys of the settings or of a group (read-only, no id).
 */
export interface ProxyKey {
  id?: number
  name: string
  source: 'named' | 'global' | 'group'
  read_only: boolean
  masked: string
  groups: string[]
  enabled: boolean
  expired: boolean
  expires_at: string | null
  notes: string
  rpm: number
  tpm: number
  daily_tokens: number
  monthly_tokens: number
  usage?: ProxyKeyTokens
  remaining: ProxyKeyTokens
  /** The secret: only in the answers of create and rotate. */
  key?: string
  created_at: string | null
  last_used_at: string | null
}
/** The body of a named proxy key's create or update. */
export interface ProxyKeyInput {
  name: string
  groups: string[]
  enabled: boolean
  expires_at: string | null
  notes: string
  rpm: number
  tpm: number
  daily_tokens: number
  monthly_tokens: number
}
