// What the browser tests and the measurement share to drive a node: a free port, the wait
// for its /health, and calls of its admin API.
import { createServer } from 'node:net'

// freePort is a TCP port on 127.0.0.1 that nothing listens on.
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => res(port))
    })
    s.on('error', rej)
  })
}

// waitHealthy waits until base answers /health with 200, for at most ms.
export async function waitHealthy(base, ms) {
  const end = Date.now() + ms
  for (;;) {
    try {
      const r = await fetch(base + '/health')
      if (r.ok) return
    } catch {
      /* not listening yet */
    }
    if (Date.now() > end) throw new Error('the server did not become healthy')
    await new Promise((r) => setTimeout(r, 100))
  }
}

// callAdmin calls the admin API of base with adminKey and returns the envelope's data; an
// answer other than 2xx throws with the status and the body.
export async function callAdmin(base, adminKey, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { Authorization: 'Bearer ' + adminKey, 'Content-Type': 'application/json', 'Accept-Language': 'en' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const j = await r.json()
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}`)
  return j.data
}
