import { createClient } from './client'
import { acceptLanguage, prefs } from '../lib/prefs'
import { logout, session } from '../lib/session'

export const api = createClient({
  key: () => session.key,
  lang: () => acceptLanguage[prefs.lang],
  onUnauthorized: () => logout(),
})
export { ApiError } from './client'
