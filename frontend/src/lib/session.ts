import { reactive } from 'vue'

// There are no sessions in the API: the admin key itself is sent with every call
// (API.md 1.1), so the dashboard keeps it in localStorage and a reload stays logged in.
const KEY = 'gpt-load.auth-key'

export const session = reactive({ key: localStorage.getItem(KEY) as string | null })

export function setKey(key: string) {
  session.key = key
  localStorage.setItem(KEY, key)
}

export function logout() {
  session.key = null
  localStorage.removeItem(KEY)
}
