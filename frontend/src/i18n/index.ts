import { createI18n } from 'vue-i18n'
import { watch } from 'vue'
import en from './en'
import zhCN from './zh-CN'
import ja from './ja'
import { prefs } from '../lib/prefs'

export type Messages = typeof en

export const messages = { en, 'zh-CN': zhCN, ja } as const

export const i18n = createI18n({
  legacy: false,
  locale: prefs.lang,
  fallbackLocale: 'en',
  messages: messages as any,
  // A missing text would show English inside another language: the tests compare the
  // catalogues key by key instead of letting it fall back silently.
  missingWarn: false,
  fallbackWarn: false,
})

document.documentElement.lang = prefs.lang
watch(
  () => prefs.lang,
  (v) => {
    ;(i18n.global.locale as any).value = v
  },
)
