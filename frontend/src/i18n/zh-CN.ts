import type en from './en'

const zhCN: typeof en = {
  nav: { dashboard: '仪表盘', keys: '密钥管理', logs: '日志', usage: '用量', settings: '系统设置', audit: '审计', import: '导入', logout: '退出登录', menu: '主菜单' },
  theme: { system: '跟随系统', light: '浅色', dark: '深色' },
  common: {
    close: '关闭', actions: '操作', add: '添加', cancel: '取消', confirm: '确认', copy: '复制', delete: '删除', deleted: '已删除', edit: '编辑',
    language: '语言', theme: '主题', refresh: '刷新', remove: '移除', reset: '重置', save: '保存', saved: '已保存',
    search: '搜索', submit: '提交',
  },
  login: {
    title: '登录 GPT-Load', key: '管理密钥', placeholder: 'AUTH_KEY', submit: '登录', required: '请输入管理密钥',
    wrong: '管理密钥不正确',
  },
  dashboard: {
    keys: '有效密钥', invalid: '无效', rpm: '每分钟请求数', rpmHint: '最近 10 分钟', requests: '请求数',
    last24h: '最近 24 小时', errorRate: '错误率', tokens: '令牌数', chart: '每小时请求', allGroups: '全部分组',
    encryption: '加密', encryptionOff: '未设置 ENCRYPTION_KEY：密钥以明文存储。', encryptionOk: '已存储的密钥与当前 ENCRYPTION_KEY 配置一致。', warnings: '安全警告',
  },
  groups: {
    search: '搜索分组', create: '分组', none: '还没有分组', drag: '拖动以排序', delete: '删除分组',
    confirmDelete: '删除分组“{name}”及其全部密钥？此操作无法撤销。', copyNone: '复制（不含密钥）',
    copyValid: '复制（仅有效密钥）', copyAll: '复制（全部密钥）', copiedAs: '已复制为 {name}', keys: '密钥（有效 / 总数）',
    h24: '24 小时', d7: '7 天', d30: '30 天', endpoint: '接口地址', subGroups: '子分组', pickMember: '添加分组',
  },
  form: {
    createTitle: '新建分组', editTitle: '编辑分组 {name}', name: '名称', displayName: '显示名称', description: '描述',
    groupType: '分组类型', standard: '标准', aggregate: '聚合', channelType: '渠道类型', sort: '排序',
    proxyKeys: '代理密钥', proxyKeysHint: '以逗号分隔，在全局代理密钥之外', upstreams: '上游地址', weight: '权重',
    addUpstream: '上游', testModel: '测试模型', validationEndpoint: '验证接口', config: '覆盖系统设置',
    configKey: '设置项', addConfig: '覆盖项', systemValue: '系统值', headerRules: '请求头规则', headerName: '请求头',
    headerValue: '值', headerSet: '设置', headerRemove: '删除', addHeader: '规则',
    headerVars: '值中可用的变量：',
    redirects: '模型重定向', redirectFrom: '请求的模型', redirectTo: '上游模型', addRedirect: '规则',
    strict: '严格模式：拒绝没有规则的模型', paramOverrides: '参数覆盖（JSON 对象）', fixErrors: '请修正标出的字段',
    saved: '分组已保存',
    err: {
      name: '1 到 100 个字符：小写字母、数字、“_”和“-”', upstreamRequired: '至少需要一个上游',
      upstreamUrl: '每个上游地址都必须以 http:// 或 https:// 开头', upstreamWeight: '权重为不小于 0 的整数',
      upstreamPositive: '至少一个上游的权重需大于 0', testModel: '测试模型不能为空',
      endpoint: '以“/”开头的路径，不能包含“://”', configNumber: '{name} 必须是整数',
      headerDuplicate: '请求头 {name} 重复', redirectBlank: '重定向规则的两个模型都不能为空',
      paramObject: '必须是 JSON 对象', paramJson: '不是有效的 JSON：{detail}',
    },
  },
  keys: {
    key: '密钥', status: '状态', active: '有效', invalid: '无效', disabled: '已停用', cooling: '冷却中',
    cooldownUntil: '{time} 前不参与轮换', requests: '请求数', failures: '失败数', lastUsed: '最后使用',
    lastError: '最近错误', notes: '备注', addNote: '添加备注', statusAll: '全部状态', search: '密钥、掩码或哈希',
    add: '添加密钥', more: '更多', export: '导出', exportAll: '全部密钥', exportActive: '有效密钥', exportInvalid: '无效密钥',
    selected: '已选 {n} 个', selectInvalid: '选中本页无效密钥', restore: '恢复', test: '测试', disable: '停用',
    enable: '启用', clearSelection: '清除选择', restoreAllInvalid: '恢复全部无效密钥', clearInvalid: '删除全部无效密钥',
    clearAll: '删除全部密钥', validateAll: '验证全部密钥', validateInvalid: '验证无效密钥', deleteByText: '按文本删除密钥',
    deleteSelected: '删除所选密钥', confirmDelete: '删除 {n} 个密钥？', confirmRestoreAll: '将此分组的全部无效密钥恢复到轮换中？',
    confirmClearInvalid: '删除此分组的全部无效密钥？', confirmClearAll: '删除分组 {name} 的全部密钥？此操作无法撤销。',
    copied: '已复制', testOk: '密钥可用', testFailed: '密钥不可用', tested: '{ok} 个可用，{bad} 个失败', restored: '已恢复 {n} 个密钥',
    deleted: '已删除 {n} 个密钥', selectFirst: '请先选择密钥', taskStarted: '任务已开始', byText: '文本', byFile: '文件（.txt）',
    textHint: '每行一个密钥，或以空格、逗号、分号分隔；也可以是字符串的 JSON 数组',
    chooseFile: '选择文件', fileRequired: '请先选择文件', total: '共 {n} 个密钥',
  },
  task: {
    KEY_IMPORT: '正在导入密钥', KEY_DELETE: '正在删除密钥', KEY_VALIDATION: '正在验证密钥', IMPORT_GPTLOAD: '正在导入 gpt-load 数据库',
    done: '已完成', finished: '任务已完成',
    result: {
      added_count: '新增', ignored_count: '忽略', deleted_count: '删除', total_keys: '密钥', valid_keys: '有效', invalid_keys: '无效',
      groups: '分组', keys: '密钥', settings: '设置',
    },
  },
  logs: {
    time: '时间', status: '状态码', group: '分组', parentGroup: '聚合分组', model: '模型', key: '密钥', keyExact: '密钥（精确）',
    proxyKey: '代理密钥', type: '类型', final: '最终', retry: '重试', duration: '耗时', tokens: '令牌', ip: '客户端 IP',
    error: '错误', errorContains: '错误包含', anyResult: '全部结果', success: '成功', failure: '失败', anyType: '全部类型',
    exportLogs: '日志（CSV）', exportKeys: '去重密钥（CSV）', total: '共 {n} 条日志', detail: '请求详情', path: '路径', upstream: '上游',
    userAgent: '用户代理', body: '请求体', stream: '流式',
  },
  usage: {
    by: { hour: '小时', day: '天', model: '模型', key: '密钥', proxy_key: '代理密钥' },
    requests: '请求数', failures: '失败数', prompt: '输入令牌', completion: '输出令牌', total: '总令牌',
  },
  settings: { nothing: '没有更改' },
  audit: {
    time: '时间', type: '事件', actor: '操作者', node: '节点', groups: '分组', details: '详情',
    typeHint: '事件类型，以逗号分隔（如 group.created）',
  },
  import: {
    intro: '从 gpt-load 的数据库文件（SQLite）导入分组、密钥和设置。建议先试运行：它只报告将会发生的变化。',
    file: '数据库文件', fileRequired: '请选择数据库文件', encryptionKey: '该 gpt-load 的 ENCRYPTION_KEY',
    encryptionKeyHint: '仅当它加密了密钥时需要', overwrite: '覆盖此处同名的分组',
    dryRun: '试运行（不做任何更改）', start: '导入',
  },
}
export default zhCN
