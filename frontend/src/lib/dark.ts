import { onBeforeUnmount, ref } from 'vue'

/** Whether the system asks for a dark page, following its changes. */
export function usePreferredDark() {
  const mq = window.matchMedia?.('(prefers-color-scheme: dark)')
  const dark = ref(mq?.matches ?? false)
  const on = (e: MediaQueryListEvent) => (dark.value = e.matches)
  mq?.addEventListener?.('change', on)
  onBeforeUnmount(() => mq?.removeEventListener?.('change', on))
  return dark
}
