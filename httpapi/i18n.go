package httpapi

import (
	"fmt"
	"net/http"
	"strings"
)

// lang is a language of API messages.
type lang uint8

const (
	langEN lang = iota
	langZH
	langJA
	numLangs
)

// langOf reads the first tag of Accept-Language (API.md 0.3, with our decision of API.md
// 11): zh* is Simplified Chinese, ja* Japanese, anything else or nothing English.
func langOf(r *http.Request) lang {
	h := r.Header.Get("Accept-Language")
	if i := strings.IndexAny(h, ",;"); i >= 0 {
		h = h[:i]
	}
	h = strings.ToLower(strings.TrimSpace(h))
	switch {
	case strings.HasPrefix(h, "zh"):
		return langZH
	case strings.HasPrefix(h, "ja"):
		return langJA
	}
	return langEN
}

// msgID names a fixed message of the API.
type msgID string

// tr returns the message in the request's language, formatted with args.
func tr(r *http.Request, id msgID, args ...any) string {
	return trLang(langOf(r), id, args...)
}

func trLang(l lang, id msgID, args ...any) string {
	m, ok := messages[id]
	if !ok {
		panic("httpapi: no message " + string(id))
	}
	s := m[l]
	if s == "" {
		s = m[langEN]
	}
	if len(args) == 0 {
		return s
	}
	return fmt.Sprintf(s, args...)
}

const (
	msgSuccess              msgID = "success"
	msgGroupOrderSaved      msgID = "group_order_saved"
	msgKeysRestored         msgID = "keys_restored"
	msgInvalidKeysCleared   msgID = "invalid_keys_cleared"
	msgKeysCleared          msgID = "keys_cleared"
	msgKeysDisabled         msgID = "keys_disabled"
	msgKeysEnabled          msgID = "keys_enabled"
	msgSettingsUpdated      msgID = "settings_updated"
	msgGroupCopiedNoKeys    msgID = "group_copied_no_keys"
	msgAuthFailed           msgID = "auth_failed"
	msgAuthSuccess          msgID = "auth_success"
	msgInvalidRequest       msgID = "invalid_request"
	msgUnexpected           msgID = "unexpected"
	msgCancelled            msgID = "cancelled"
	msgLogUnavailable       msgID = "log_unavailable"
	msgStarting             msgID = "starting"
	msgGroupNotFound        msgID = "group_not_found"
	msgKeyNotFound          msgID = "key_not_found"
	msgInvalidGroupID       msgID = "invalid_group_id"
	msgInvalidKeyID         msgID = "invalid_key_id"
	msgInvalidProxyKeyID    msgID = "invalid_proxy_key_id"
	msgInvalidSubGroupID    msgID = "invalid_sub_group_id"
	msgGroupIDRequired      msgID = "group_id_required"
	msgGroupIDInvalid       msgID = "group_id_invalid"
	msgFileRequired         msgID = "file_required"
	msgOnlyTxt              msgID = "only_txt"
	msgKeysTextEmpty        msgID = "keys_text_empty"
	msgNoValidKeys          msgID = "no_valid_keys"
	msgBatchTooLarge        msgID = "batch_too_large"
	msgKeyTooLong           msgID = "key_too_long"
	msgBatchUseAsync        msgID = "batch_use_async"
	msgTooManyRequests      msgID = "too_many_requests"
	msgLoginBackoff         msgID = "login_backoff"
	msgTaskBusy             msgID = "task_busy"
	msgNoKeysToValidate     msgID = "no_keys_to_validate"
	msgNotAggregate         msgID = "not_aggregate"
	msgProxyKeyRequired     msgID = "proxy_key_required"
	msgProxyKeyInvalid      msgID = "proxy_key_invalid"
	msgValidatorMissing     msgID = "validator_missing"
	msgKeyNotInGroup        msgID = "key_not_in_group"
	msgInvalidSettings      msgID = "invalid_settings"
	msgInvalidKeysTip       msgID = "invalid_keys_tip"
	msgWarnAuthKeyMissing   msgID = "warn_auth_key_missing"
	msgWarnEncKeyMissing    msgID = "warn_enc_key_missing"
	msgWarnTooShort         msgID = "warn_too_short"
	msgWarnShort            msgID = "warn_short"
	msgWarnWeakWord         msgID = "warn_weak_word"
	msgWarnLowVariety       msgID = "warn_low_variety"
	msgWarnAdminKeyReuse    msgID = "warn_admin_key_reuse"
	msgSuggestOwnProxyKey   msgID = "suggest_own_proxy_key"
	msgSuggestAuthKey       msgID = "suggest_auth_key"
	msgSuggestEncKey        msgID = "suggest_enc_key"
	msgSuggestStrongKey     msgID = "suggest_strong_key"
	msgGlobalProxyKey       msgID = "global_proxy_key"
	msgGroupProxyKey        msgID = "group_proxy_key"
	msgEncNotEncrypted      msgID = "enc_not_encrypted"
	msgEncNotEncryptedHow   msgID = "enc_not_encrypted_how"
	msgEncKeyNotConfigured  msgID = "enc_key_not_configured"
	msgEncKeyNotConfigHow   msgID = "enc_key_not_configured_how"
	msgEncKeyMismatch       msgID = "enc_key_mismatch"
	msgEncKeyMismatchHow    msgID = "enc_key_mismatch_how"
	msgCategoryBasic        msgID = "category_basic"
	msgCategoryRequest      msgID = "category_request"
	msgCategoryKey          msgID = "category_key"
	msgValidationTaskFailed msgID = "validation_failed"
	msgDatabase             msgID = "database_error"
	msgLogsUnavailable      msgID = "logs_unavailable"
	msgExportFailed         msgID = "export_failed"
	msgChartSuccess         msgID = "chart_success"
	msgChartFailed          msgID = "chart_failed"
)

// messages holds every fixed message in English, Simplified Chinese and Japanese.
var messages = map[msgID][numLangs]string{
	msgSuccess:            {"Success", "操作成功", "成功しました"},
	msgGroupOrderSaved:    {"Group order saved", "分组排序已保存", "グループの並び順を保存しました"},
	msgKeysRestored:       {"%d keys restored", "已恢复 %d 个密钥", "%d 件のキーを復元しました"},
	msgInvalidKeysCleared: {"%d invalid keys cleared", "已清除 %d 个无效密钥", "%d 件の無効なキーを削除しました"},
	msgKeysCleared:        {"%d keys cleared", "已清除 %d 个密钥", "%d 件のキーを削除しました"},
	msgKeysDisabled:       {"%d keys disabled", "已停用 %d 个密钥", "%d 件のキーを無効にしました"},
	msgKeysEnabled:        {"%d keys enabled", "已启用 %d 个密钥", "%d 件のキーを有効にしました"},
	msgSettingsUpdated:    {"Settings updated", "设置已更新", "設定を更新しました"},
	msgGroupCopiedNoKeys: {
		"Group copied; its keys were not copied because another task is running",
		"分组已复制；由于另一个任务正在运行，密钥未被复制",
		"グループをコピーしました。別のタスクが実行中のため、キーはコピーされていません",
	},
	msgAuthFailed:     {"Authentication failed", "认证失败", "認証に失敗しました"},
	msgAuthSuccess:    {"Authentication successful", "认证成功", "認証に成功しました"},
	msgInvalidRequest: {"Invalid request: auth_key is required", "无效的请求：缺少 auth_key", "無効なリクエストです: auth_key が必要です"},
	msgUnexpected:     {"An unexpected error occurred", "发生意外错误", "予期しないエラーが発生しました"},
	msgCancelled:      {"The request was cancelled", "请求已取消", "リクエストはキャンセルされました"},
	msgLogUnavailable: {"The event log did not confirm the change in time (NATS out of reach, or its storage full): it may not have been applied; check and try again",
		"事件日志未能及时确认此更改（NATS 无法访问或其存储已满）：更改可能未生效，请检查后重试",
		"イベントログが時間内に変更を確認しませんでした（NATS に接続できないか、ストレージが満杯です）。変更は適用されていない可能性があります。確認して再試行してください"},
	msgStarting:          {"The service is starting: it is still reading its event log", "服务正在启动：仍在读取事件日志", "サービスを起動中です: イベントログを読み込んでいます"},
	msgGroupNotFound:     {"Group not found", "分组不存在", "グループが見つかりません"},
	msgKeyNotFound:       {"Key not found", "密钥不存在", "キーが見つかりません"},
	msgInvalidGroupID:    {"Invalid group id", "无效的分组 ID", "無効なグループ ID です"},
	msgInvalidKeyID:      {"Invalid key id", "无效的密钥 ID", "無効なキー ID です"},
	msgInvalidProxyKeyID: {"Invalid proxy key id", "无效的代理密钥 ID", "無効なプロキシキー ID です"},
	msgInvalidSubGroupID: {"Invalid sub-group id", "无效的子分组 ID", "無効なサブグループ ID です"},
	msgGroupIDRequired:   {"group_id query parameter is required", "缺少 group_id 查询参数", "クエリパラメータ group_id が必要です"},
	msgGroupIDInvalid:    {"group_id must be a positive integer", "group_id 必须是正整数", "group_id は正の整数でなければなりません"},
	msgFileRequired:      {"File is required", "请上传文件", "ファイルが必要です"},
	msgOnlyTxt:           {"only .txt files are supported", "仅支持 .txt 文件", ".txt ファイルのみ対応しています"},
	msgKeysTextEmpty:     {"Keys text cannot be empty", "密钥文本不能为空", "キーのテキストを空にすることはできません"},
	msgNoValidKeys:       {"no valid keys found in the input text", "输入文本中没有找到有效的密钥", "入力テキストに有効なキーが見つかりません"},
	msgBatchTooLarge:     {"batch size exceeds the limit of %d keys, got %d", "批量大小超过 %d 个密钥的限制，实际为 %d", "一度に処理できるキーは %d 件までです（%d 件が指定されました）"},
	msgKeyTooLong:        {"entry %d is longer than %d bytes", "第 %d 项超过 %d 字节", "%d 番目の項目が %d バイトを超えています"},
	msgBatchUseAsync:     {"batch size exceeds the limit of %d keys, got %d: use %s for larger batches", "批量大小超过 %d 个密钥的限制，实际为 %d：更大的批量请使用 %s", "一度に処理できるキーは %d 件までです（%d 件が指定されました）。それより多い場合は %s を使ってください"},
	msgTooManyRequests:   {"Too many concurrent requests, retry shortly", "并发请求过多，请稍后重试", "同時リクエストが多すぎます。しばらくしてから再試行してください"},
	msgLoginBackoff:      {"Too many wrong admin keys from this address: retry in %d s", "此地址的错误管理密钥过多：请在 %d 秒后重试", "このアドレスからの誤った管理キーが多すぎます。%d 秒後に再試行してください"},
	msgTaskBusy:          {"a task is already running, please wait", "已有任务正在运行，请稍候", "別のタスクが実行中です。しばらくお待ちください"},
	msgNoKeysToValidate:  {"no keys to validate in this group", "该分组中没有需要验证的密钥", "このグループに検証するキーがありません"},
	msgNotAggregate:      {"Group is not an aggregate group", "该分组不是聚合分组", "このグループは集約グループではありません"},
	msgProxyKeyRequired:  {"Proxy key is required", "需要代理密钥", "プロキシキーが必要です"},
	msgProxyKeyInvalid:   {"Invalid or unauthorized proxy key", "代理密钥无效或未授权", "プロキシキーが無効か、権限がありません"},
	msgValidatorMissing:  {"Key validation is not available on this node", "此节点不支持密钥验证", "このノードではキーの検証を利用できません"},
	msgKeyNotInGroup:     {"Key does not exist in this group or has been removed.", "该密钥不在此分组中或已被删除。", "このキーはこのグループに存在しないか、削除されています。"},
	msgInvalidSettings:   {"Invalid settings: %s", "设置无效：%s", "設定が無効です: %s"},
	msgInvalidKeysTip:    {"Invalid keys", "无效密钥", "無効なキー"},
	msgDatabase:          {"Database error", "数据库错误", "データベースエラー"},
	msgLogsUnavailable:   {"Request logs are not available on this node", "此节点不提供请求日志", "このノードではリクエストログを利用できません"},
	msgExportFailed:      {"Failed to export logs", "导出日志失败", "ログのエクスポートに失敗しました"},
	msgChartSuccess:      {"Success", "成功请求", "成功"},
	msgChartFailed:       {"Failed", "失败请求", "失敗"},
	msgWarnAuthKeyMissing: {
		"AUTH_KEY is not set: the admin API is not protected", "未设置 AUTH_KEY：管理接口没有保护", "AUTH_KEY が設定されていません: 管理 API が保護されていません",
	},
	msgWarnEncKeyMissing: {
		"ENCRYPTION_KEY is not set: upstream keys are stored in clear", "未设置 ENCRYPTION_KEY：上游密钥以明文存储", "ENCRYPTION_KEY が設定されていません: 上流キーが平文で保存されます",
	},
	msgWarnTooShort:       {"%s is shorter than 16 characters", "%s 短于 16 个字符", "%s が 16 文字未満です"},
	msgWarnShort:          {"%s is shorter than 32 characters", "%s 短于 32 个字符", "%s が 32 文字未満です"},
	msgWarnWeakWord:       {"%s contains the common word %q", "%s 包含常见词 %q", "%s に一般的な語 %q が含まれています"},
	msgWarnLowVariety:     {"%s uses fewer than 3 kinds of characters", "%s 使用的字符种类少于 3 种", "%s の文字の種類が 3 種類未満です"},
	msgSuggestAuthKey:     {"Set AUTH_KEY to a long random value", "请将 AUTH_KEY 设置为较长的随机值", "AUTH_KEY に長いランダムな値を設定してください"},
	msgSuggestEncKey:      {"Set ENCRYPTION_KEY to a long random value to encrypt keys at rest", "请设置较长的随机 ENCRYPTION_KEY 以加密存储密钥", "保存時にキーを暗号化するため、ENCRYPTION_KEY に長いランダムな値を設定してください"},
	msgWarnAdminKeyReuse:  {"%s is the admin key (AUTH_KEY): a client given it can also run the admin API", "%s 与管理密钥 (AUTH_KEY) 相同：持有它的客户端也能使用管理接口", "%s は管理キー (AUTH_KEY) と同じです。これを渡されたクライアントは管理 API も使えます"},
	msgSuggestOwnProxyKey: {"Give clients proxy keys of their own, different from AUTH_KEY", "请为客户端设置独立的代理密钥，不要与 AUTH_KEY 相同", "クライアントには AUTH_KEY とは別の専用プロキシキーを渡してください"},
	msgSuggestStrongKey:   {"Use at least 32 random characters mixing upper and lower case letters, digits and symbols", "请使用至少 32 个混合大小写字母、数字和符号的随机字符", "大文字・小文字・数字・記号を混ぜた 32 文字以上のランダムな値を使ってください"},
	msgGlobalProxyKey:     {"Global Proxy Key #%d", "全局代理密钥 #%d", "グローバルプロキシキー #%d"},
	msgGroupProxyKey:      {"Group Proxy Key [%s] #%d", "分组代理密钥 [%s] #%d", "グループプロキシキー [%s] #%d"},
	msgEncNotEncrypted:    {"ENCRYPTION_KEY is set but the stored keys are not encrypted", "已设置 ENCRYPTION_KEY，但已存储的密钥未加密", "ENCRYPTION_KEY が設定されていますが、保存済みのキーは暗号化されていません"},
	msgEncNotEncryptedHow: {
		"Stop the service and run `gpt-load migrate-keys --to <key>` to encrypt the existing keys, or unset ENCRYPTION_KEY",
		"请停止服务并运行 `gpt-load migrate-keys --to <key>` 加密现有密钥，或取消 ENCRYPTION_KEY",
		"サービスを停止して `gpt-load migrate-keys --to <key>` で既存のキーを暗号化するか、ENCRYPTION_KEY を外してください",
	},
	msgEncKeyNotConfigured: {"The stored keys are encrypted but ENCRYPTION_KEY is not set", "已存储的密钥已加密，但未设置 ENCRYPTION_KEY", "保存済みのキーは暗号化されていますが、ENCRYPTION_KEY が設定されていません"},
	msgEncKeyNotConfigHow: {
		"Set ENCRYPTION_KEY to the key the data was encrypted with, or run `gpt-load migrate-keys --from <key>`",
		"请将 ENCRYPTION_KEY 设置为加密数据时使用的密钥，或运行 `gpt-load migrate-keys --from <key>`",
		"データの暗号化に使った値を ENCRYPTION_KEY に設定するか、`gpt-load migrate-keys --from <key>` を実行してください",
	},
	msgEncKeyMismatch: {"ENCRYPTION_KEY does not match the key the stored keys were encrypted with", "ENCRYPTION_KEY 与加密已存储密钥时使用的密钥不一致", "ENCRYPTION_KEY が保存済みのキーの暗号化に使われた値と一致しません"},
	msgEncKeyMismatchHow: {
		"Set ENCRYPTION_KEY back to its previous value, or re-encrypt with `gpt-load migrate-keys --from <old> --to <new>`",
		"请将 ENCRYPTION_KEY 改回原值，或使用 `gpt-load migrate-keys --from <old> --to <new>` 重新加密",
		"ENCRYPTION_KEY を以前の値に戻すか、`gpt-load migrate-keys --from <old> --to <new>` で再暗号化してください",
	},
	msgCategoryBasic:        {"Basic", "基础参数", "基本設定"},
	msgCategoryRequest:      {"Request", "请求设置", "リクエスト設定"},
	msgCategoryKey:          {"Key", "密钥配置", "キー設定"},
	msgValidationTaskFailed: {"validation failed: %s", "验证失败：%s", "検証に失敗しました: %s"},
}

// settingText is a setting's name and description in the non-English languages; English
// comes from the domain.
var settingText = map[string][numLangs][2]string{
	"app_url": {
		langZH: {"项目地址", "本服务的公开访问地址，例如 https://gpt-load.example.com。界面中显示的分组端点由它生成。"},
		langJA: {"アプリケーション URL", "このサービスの公開 URL（例: https://gpt-load.example.com）。画面に表示されるグループのエンドポイントはこれから作られます。"},
	},
	"proxy_keys": {
		langZH: {"全局代理密钥", "以逗号分隔的代理密钥，客户端可用于所有分组，另外每个分组还有自己的代理密钥。"},
		langJA: {"グローバルプロキシキー", "すべてのグループで使えるプロキシキー（カンマ区切り）。各グループ独自のプロキシキーに加えて使えます。"},
	},
	"request_log_retention_days": {
		langZH: {"日志保留时长（天）", "超过此天数的请求日志将被删除。0 表示永久保留。"},
		langJA: {"リクエストログの保存期間（日）", "この日数より古いリクエストログは削除されます。0 は無期限に保存します。"},
	},
	"request_log_write_interval_minutes": {
		langZH: {"日志写入间隔（分钟）", "为兼容 gpt-load 而保留，原为日志缓冲的写入周期（0 = 立即写入）。这里的日志无论取值如何都会在数秒内可见。"},
		langJA: {"ログ書き込み間隔（分）", "gpt-load との互換のために残された設定で、元はログバッファの書き込み周期でした（0 = 即時）。ここでは値にかかわらず数秒でログが表示されます。"},
	},
	"enable_request_body_logging": {
		langZH: {"记录请求体", "在请求日志中保存代理请求的请求体（以及 User-Agent）。请求体可能包含敏感数据。"},
		langJA: {"リクエストボディを記録", "プロキシしたリクエストのボディ（と User-Agent）をリクエストログに保存します。ボディには機密情報が含まれる場合があります。"},
	},
	"request_timeout": {
		langZH: {"请求超时（秒）", "非流式代理请求从开始到结束的最长时间。"},
		langJA: {"リクエストタイムアウト（秒）", "ストリーミングでないプロキシリクエストの開始から終了までの最長時間。"},
	},
	"connect_timeout": {
		langZH: {"连接超时（秒）", "与上游建立连接的最长等待时间。"},
		langJA: {"接続タイムアウト（秒）", "上流への接続が確立するまでの最長待ち時間。"},
	},
	"idle_conn_timeout": {
		langZH: {"空闲连接超时（秒）", "与上游的空闲长连接保持打开的时间。"},
		langJA: {"アイドル接続タイムアウト（秒）", "使われていない上流へのキープアライブ接続を開いておく時間。"},
	},
	"response_header_timeout": {
		langZH: {"响应头超时（秒）", "发送请求后等待上游响应头的最长时间，包括流式请求。"},
		langJA: {"レスポンスヘッダータイムアウト（秒）", "リクエスト送信後、上流のレスポンスヘッダーを待つ最長時間（ストリーミングを含む）。"},
	},
	"max_idle_conns": {
		langZH: {"最大空闲连接数", "与上游的空闲长连接池大小（流式客户端至少保留 50 个）。"},
		langJA: {"最大アイドル接続数", "上流へのアイドルなキープアライブ接続のプールの大きさ（ストリーミング用は 50 以上）。"},
	},
	"max_idle_conns_per_host": {
		langZH: {"每主机最大空闲连接数", "每个上游主机保留的空闲长连接数（流式客户端至少保留 20 个）。"},
		langJA: {"ホストごとの最大アイドル接続数", "上流ホストごとに保持するアイドルなキープアライブ接続の数（ストリーミング用は 20 以上）。"},
	},
	"proxy_url": {
		langZH: {"出站代理地址", "调用上游时使用的 HTTP、HTTPS 或 SOCKS5 代理，例如 socks5://127.0.0.1:1080。留空则使用 HTTP_PROXY、HTTPS_PROXY 和 NO_PROXY 环境变量。"},
		langJA: {"送信プロキシ URL", "上流への呼び出しに使う HTTP、HTTPS、SOCKS5 プロキシ（例: socks5://127.0.0.1:1080）。空の場合は環境変数 HTTP_PROXY、HTTPS_PROXY、NO_PROXY を使います。"},
	},
	"max_retries": {
		langZH: {"最大重试次数", "失败的请求再尝试的次数，每次换一个密钥（总尝试次数 = 重试次数 + 1）。"},
		langJA: {"最大リトライ回数", "失敗したリクエストを別のキーで再試行する回数（総試行回数 = リトライ回数 + 1）。"},
	},
	"blacklist_threshold": {
		langZH: {"黑名单阈值", "连续认证失败达到此次数后，密钥被标记为无效并移出轮换。0 表示从不拉黑。"},
		langJA: {"ブラックリストしきい値", "認証の失敗がこの回数続くとキーは無効になり、ローテーションから外れます。0 は無効にしません。"},
	},
	"failover_status_codes": {
		langZH: {"故障转移状态码", "使代理换用另一个密钥的上游状态码：以逗号分隔的状态码和范围，例如 401-403,429,500-599。留空则从不重试。默认对除 400、404、413、422 之外的所有错误重试。"},
		langJA: {"フェイルオーバーのステータスコード", "プロキシが別のキーを試す上流のステータス。カンマ区切りのコードと範囲（例: 401-403,429,500-599）。空の場合は再試行しません。既定では 400、404、413、422 以外のすべてのエラーで再試行します。"},
	},
	"key_validation_interval_minutes": {
		langZH: {"密钥验证间隔（分钟）", "后台重新检查分组中无效和冷却中密钥的频率。"},
		langJA: {"キー検証の間隔（分）", "グループの無効なキーと休止中のキーをバックグラウンドで再確認する間隔。"},
	},
	"key_validation_concurrency": {
		langZH: {"密钥验证并发数", "同时验证一个分组中多少个密钥，包括后台和手动验证。"},
		langJA: {"キー検証の同時実行数", "グループ内で同時に検証するキーの数（バックグラウンドと手動の両方）。"},
	},
	"key_validation_timeout_seconds": {
		langZH: {"密钥验证超时（秒）", "一次密钥验证请求的最长时间。"},
		langJA: {"キー検証のタイムアウト（秒）", "1 回のキー検証リクエストの最長時間。"},
	},
	"retry_empty_response": {
		langZH: {"重试空响应", "上游返回 200 但内容为空（没有 choices、candidates 或 content）时，换一个密钥重试。仅适用于非流式响应。"},
		langJA: {"空の応答を再試行", "上流が 200 で空の応答（choices、candidates、content なし）を返したとき、別のキーで再試行します。ストリーミングでない応答にのみ適用されます。"},
	},
	"prompt_cache_affinity": {
		langZH: {"提示缓存亲和", "同一会话的请求在密钥可用时始终发往同一个密钥，使服务商的提示缓存持续生效。会话由 prompt_cache_key、user、metadata.user_id 或 cachedContent 识别，否则由开头的消息识别。每个节点各自记录会话。"},
		langJA: {"プロンプトキャッシュのアフィニティ", "同じ会話のリクエストを、そのキーが使える間は同じキーに送り、プロバイダのプロンプトキャッシュを活かします。会話は prompt_cache_key、user、metadata.user_id、cachedContent で、なければ先頭のメッセージで識別します。各ノードが自分の会話を記憶します。"},
	},
	"upstream_key_rpm": {
		langZH: {"每个密钥每分钟请求数", "每个密钥在每个自然分钟内最多发送的请求数；额度用完的密钥休息到下一分钟。由每个节点各自计数。0 表示不限制。"},
		langJA: {"キーごとの毎分リクエスト数", "1 つのキーに時計の 1 分間で送る最大リクエスト数。使い切ったキーは次の分まで休みます。各ノードが個別に数えます。0 は無制限です。"},
	},
	"upstream_key_tpm": {
		langZH: {"每个密钥每分钟令牌数", "每个密钥在每个自然分钟内最多使用的令牌数（上游报告的提示与补全令牌）；用完的密钥休息到下一分钟。由每个节点各自计数。0 表示不限制。"},
		langJA: {"キーごとの毎分トークン数", "1 つのキーが時計の 1 分間で使える最大トークン数（上流が報告するプロンプトと補完の合計）。使い切ったキーは次の分まで休みます。各ノードが個別に数えます。0 は無制限です。"},
	},
}

// settingName and settingDescription localize a setting's texts; English is the
// domain's.
func settingName(l lang, key, en string) string {
	if t, ok := settingText[key]; ok && l != langEN && t[l][0] != "" {
		return t[l][0]
	}
	return en
}

func settingDescription(l lang, key, en string) string {
	if t, ok := settingText[key]; ok && l != langEN && t[l][1] != "" {
		return t[l][1]
	}
	return en
}
