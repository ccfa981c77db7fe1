import type en from './en'

const ja: typeof en = {
  nav: { dashboard: 'ダッシュボード', keys: 'キー管理', logs: 'ログ', usage: '使用量', settings: '設定', audit: '監査', import: 'インポート', logout: 'ログアウト', menu: 'メインメニュー' },
  theme: { system: 'システム', light: 'ライト', dark: 'ダーク' },
  common: {
    close: '閉じる', actions: '操作', add: '追加', cancel: 'キャンセル', confirm: '確認', copy: 'コピー', delete: '削除', deleted: '削除しました', edit: '編集',
    language: '言語', theme: 'テーマ', refresh: '更新', remove: '外す', reset: 'リセット', save: '保存', saved: '保存しました',
    search: '検索', submit: '送信',
  },
  login: {
    title: 'GPT-Load にログイン', key: '管理キー', placeholder: 'AUTH_KEY', submit: 'ログイン', required: '管理キーを入力してください',
    wrong: '管理キーが正しくありません',
  },
  dashboard: {
    keys: '有効なキー', invalid: '無効', rpm: '毎分リクエスト数', rpmHint: '直近 10 分', requests: 'リクエスト数',
    last24h: '直近 24 時間', errorRate: 'エラー率', tokens: 'トークン数', chart: '時間ごとのリクエスト', allGroups: 'すべてのグループ',
    encryption: '暗号化', encryptionOff: 'ENCRYPTION_KEY が設定されていないため、キーは平文で保存されています。', encryptionOk: '保存されたキーは設定中の ENCRYPTION_KEY と一致しています。', warnings: 'セキュリティ警告',
  },
  groups: {
    search: 'グループを検索', create: 'グループ', none: 'グループはまだありません', drag: 'ドラッグで並べ替え', delete: 'グループを削除',
    confirmDelete: 'グループ「{name}」とそのキーをすべて削除しますか？元に戻せません。', copyNone: 'キーなしでコピー',
    copyValid: '有効なキーごとコピー', copyAll: 'すべてのキーごとコピー', copiedAs: '{name} としてコピーしました', keys: 'キー（有効 / 合計）',
    h24: '24 時間', d7: '7 日', d30: '30 日', endpoint: 'エンドポイント', subGroups: 'サブグループ', pickMember: 'グループを追加',
  },
  form: {
    createTitle: '新しいグループ', editTitle: 'グループ {name} を編集', name: '名前', displayName: '表示名', description: '説明',
    groupType: 'グループの種類', standard: '標準', aggregate: '集約', channelType: 'チャネル', sort: '並び順',
    proxyKeys: 'プロキシキー', proxyKeysHint: 'カンマ区切り。グローバルのキーに加えて有効', upstreams: 'アップストリーム', weight: '重み',
    addUpstream: 'アップストリーム', testModel: 'テストモデル', validationEndpoint: '検証エンドポイント', config: 'システム設定の上書き',
    configKey: '設定項目', addConfig: '上書き', systemValue: 'システムの値', headerRules: 'ヘッダールール', headerName: 'ヘッダー',
    headerValue: '値', headerSet: '設定', headerRemove: '削除', addHeader: 'ルール',
    headerVars: '値で使える変数：',
    redirects: 'モデルのリダイレクト', redirectFrom: '要求されたモデル', redirectTo: 'アップストリームのモデル', addRedirect: 'ルール',
    strict: '厳格モード：ルールのないモデルを拒否', paramOverrides: 'パラメータの上書き（JSON オブジェクト）', fixErrors: '印の付いた項目を直してください',
    saved: 'グループを保存しました',
    err: {
      name: '1〜100 文字の英小文字・数字・「_」・「-」', upstreamRequired: 'アップストリームが 1 つ以上必要です',
      upstreamUrl: 'アップストリームの URL は http:// か https:// で始めてください', upstreamWeight: '重みは 0 以上の整数です',
      upstreamPositive: '少なくとも 1 つのアップストリームの重みを 0 より大きくしてください', testModel: 'テストモデルは必須です',
      endpoint: '「/」で始まり「://」を含まないパス', configNumber: '{name} は整数で指定してください',
      headerDuplicate: 'ヘッダー {name} が重複しています', redirectBlank: 'リダイレクトルールの両方のモデルが必要です',
      paramObject: 'JSON オブジェクトにしてください', paramJson: 'JSON として正しくありません：{detail}',
    },
  },
  keys: {
    key: 'キー', status: '状態', active: '有効', invalid: '無効', disabled: '停止中', cooling: 'クールダウン中',
    cooldownUntil: '{time} までローテーション外', requests: 'リクエスト', failures: '失敗', lastUsed: '最終使用',
    lastError: '直近のエラー', notes: 'メモ', addNote: 'メモを追加', statusAll: 'すべての状態', search: 'キー・マスク・ハッシュ',
    add: 'キーを追加', more: 'その他', export: 'エクスポート', exportAll: 'すべてのキー', exportActive: '有効なキー', exportInvalid: '無効なキー',
    selected: '{n} 件選択中', selectInvalid: 'このページの無効なキーを選択', restore: '復元', test: 'テスト', disable: '停止',
    enable: '再開', clearSelection: '選択を解除', restoreAllInvalid: '無効なキーをすべて復元', clearInvalid: '無効なキーをすべて削除',
    clearAll: 'すべてのキーを削除', validateAll: 'すべてのキーを検証', validateInvalid: '無効なキーを検証', deleteByText: 'テキストでキーを削除',
    deleteSelected: '選択したキーを削除', confirmDelete: '{n} 件のキーを削除しますか？', confirmRestoreAll: 'このグループの無効なキーをすべてローテーションに戻しますか？',
    confirmClearInvalid: 'このグループの無効なキーをすべて削除しますか？', confirmClearAll: 'グループ {name} のキーをすべて削除しますか？元に戻せません。',
    copied: 'コピーしました', testOk: 'キーは使えます', testFailed: 'キーは使えません', tested: '{ok} 件成功、{bad} 件失敗', restored: '{n} 件のキーを復元しました',
    deleted: '{n} 件のキーを削除しました', selectFirst: '先にキーを選択してください', taskStarted: 'タスクを開始しました', byText: 'テキスト', byFile: 'ファイル（.txt）',
    textHint: '1 行に 1 キー、または空白・カンマ・セミコロン区切り。文字列の JSON 配列も使えます',
    chooseFile: 'ファイルを選択', fileRequired: '先にファイルを選択してください', total: '{n} 件のキー',
  },
  task: {
    KEY_IMPORT: 'キーをインポート中', KEY_DELETE: 'キーを削除中', KEY_VALIDATION: 'キーを検証中', IMPORT_GPTLOAD: 'gpt-load のデータベースをインポート中',
    done: '完了', finished: 'タスクが完了しました',
    result: {
      added_count: '追加', ignored_count: '無視', deleted_count: '削除', total_keys: 'キー', valid_keys: '有効', invalid_keys: '無効',
      groups: 'グループ', keys: 'キー', settings: '設定',
    },
  },
  logs: {
    time: '時刻', status: 'ステータスコード', group: 'グループ', parentGroup: '集約グループ', model: 'モデル', key: 'キー', keyExact: 'キー（完全一致）',
    proxyKey: 'プロキシキー', type: '種類', final: '最終', retry: 'リトライ', duration: '所要時間', tokens: 'トークン', ip: 'クライアント IP',
    error: 'エラー', errorContains: 'エラーに含む', anyResult: 'すべての結果', success: '成功', failure: '失敗', anyType: 'すべての種類',
    exportLogs: 'ログ（CSV）', exportKeys: '重複なしのキー（CSV）', total: '{n} 件のログ', detail: 'リクエスト', path: 'パス', upstream: 'アップストリーム',
    userAgent: 'ユーザーエージェント', body: 'リクエスト本文', stream: 'ストリーム',
  },
  usage: {
    by: { hour: '時間', day: '日', model: 'モデル', key: 'キー', proxy_key: 'プロキシキー' },
    requests: 'リクエスト', failures: '失敗', prompt: '入力トークン', completion: '出力トークン', total: '合計トークン',
  },
  settings: { nothing: '変更はありません' },
  audit: {
    time: '時刻', type: 'イベント', actor: '実行者', node: 'ノード', groups: 'グループ', details: '詳細',
    typeHint: 'イベントの種類（カンマ区切り、例：group.created）',
  },
  import: {
    intro: 'gpt-load のデータベースファイル（SQLite）からグループ、キー、設定を取り込みます。まずはドライランで変更内容を確認してください。',
    file: 'データベースファイル', fileRequired: 'データベースファイルを選択してください', encryptionKey: 'その gpt-load の ENCRYPTION_KEY',
    encryptionKeyHint: 'キーを暗号化していた場合のみ', overwrite: '同じ名前の既存グループを上書き',
    dryRun: 'ドライラン（何も変更しない）', start: 'インポート',
  },
}
export default ja
