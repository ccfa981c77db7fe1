import { writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The Go build embeds frontend/dist; dist/.keep is committed so that the embed exists
// before any build. Vite empties dist first, so the file is written back afterwards.
const keepFile = {
  name: 'keep-dist-placeholder',
  closeBundle() {
    writeFileSync(
      resolve(import.meta.dirname, 'dist/.keep'),
      'The built dashboard goes here (npm run build); this file keeps the folder, and so the embed, in place.\n',
    )
  },
}

export default defineConfig({
  plugins: [vue(), keepFile],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // No inline script: the Content-Security-Policy allows scripts from the origin only.
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1200,
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:3001',
      '/proxy': 'http://127.0.0.1:3001',
      '/health': 'http://127.0.0.1:3001',
    },
  },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.ts'],
  },
} as any)
