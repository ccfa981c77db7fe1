import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { session } from './lib/session'

export const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./views/LoginView.vue'), meta: { public: true } },
  { path: '/', name: 'dashboard', component: () => import('./views/DashboardView.vue') },
  { path: '/keys', name: 'keys', component: () => import('./views/KeysView.vue') },
  { path: '/logs', name: 'logs', component: () => import('./views/LogsView.vue') },
  { path: '/usage', name: 'usage', component: () => import('./views/UsageView.vue') },
  { path: '/proxy-keys', name: 'proxy-keys', component: () => import('./views/ProxyKeysView.vue') },
  { path: '/settings', name: 'settings', component: () => import('./views/SettingsView.vue') },
  { path: '/audit', name: 'audit', component: () => import('./views/AuditView.vue') },
  { path: '/import', name: 'import', component: () => import('./views/ImportView.vue') },
  { path: '/:pathMatch(.*)*', redirect: '/' },
]

export const router = createRouter({ history: createWebHistory(), routes })

// Logged out, every page leads to the login, which brings the user back to the page
// asked for.
router.beforeEach((to) => {
  if (!to.meta.public && !session.key) {
    return { name: 'login', query: to.fullPath !== '/' ? { redirect: to.fullPath } : {} }
  }
  if (to.name === 'login' && session.key) return { path: '/' }
  return true
})
