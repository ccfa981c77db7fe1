import { reactive, watch } from 'vue'

export type Lang = 'en' | 'zh-CN' | 'ja'
export type Theme = 'system' | 'light' | 'dark'

export const langs: { value: Lang; label: string }[] = [
  { value: 'en', label: 'English' },
  { value: 'zh-CN', label: '简体中文' },
  { value: 'ja', label: '日本語' },
]

/** The Accept-Language tag the API understands for each language of the page. */
export const acceptLanguage: Record<Lang, string> = { en: 'en-US', 'zh-CN': 'zh-CN', ja: 'ja-JP' }

/** The first of the browser's languages that the dashboard speaks, else English. */
export function detectLang(browser: readonly string[]): Lang {
  for (const tag of browser) {
    const t = tag.toLowerCase()
    if (t.startsWith('zh')) return 'zh-CN'
    if (t.startsWith('ja')) return 'ja'
    if (t.startsWith('en')) return 'en'
  }
  return 'en'
}

const LANG_KEY = 'gpt-load.lang'
const THEME_KEY = 'gpt-load.theme'

function storedLang(): Lang | null {
  const v = localStorage.getItem(LANG_KEY)
  return v === 'en' || v === 'zh-CN' || v === 'ja' ? v : null
}

function storedTheme(): Theme {
  const v = localStorage.getItem(THEME_KEY)
  return v === 'light' || v === 'dark' ? v : 'system'
}

export const prefs = reactive({
  lang: storedLang() ?? detectLang(navigator.languages ?? [navigator.language]),
  theme: storedTheme() as Theme,
})

watch(
  () => prefs.lang,
  (v) => {
    localStorage.setItem(LANG_KEY, v)
    document.documentElement.lang = v
  },
  { immediate: false },
)
watch(
  () => prefs.theme,
  (v) => localStorage.setItem(THEME_KEY, v),
)
