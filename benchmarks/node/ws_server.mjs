// The benchmark scenarios written by hand on Node's ws: the third server of benchmarks/run.py.
//
//   node ws_server.mjs [--port 0] [--backlog 4096] [--compression deflate|none]
//
// The same routes and behaviour as benchmarks/baseline_server.py (websockets), the way a Node
// developer would write them with the ws package: an http server whose 'upgrade' event routes
// by path to one WebSocketServer({ noServer: true }), a Set per room, JSON.parse and
// JSON.stringify, one setTimeout per connection for the timers.
//
//   /ws/chat  on connect: {"type":"connected","id":…}; "join": enter the room, tell the others
//             "user-joined"; "message": broadcast "chat-message" (with a timestamp) to the room,
//             sender included.
//   /ws/ping  "ping": reply {"type":"pong","seq":msg.seq,"id":conn id,"timestamp":ms}.
//   /ws/idle  accept, then ignore everything.
//   /ws/tick/set   a 1 s timer per connection (one setTimeout, re-armed at each run one interval
//             after the time it was due: no drift) that sets a key of the connection's session.
//   /ws/tick/send  the same timer sending {"n":count} to its client.
//   /ws/tick/later no timer until the client sends the text "start", then that of /ws/tick/set.
//   Any other path: 404.
//
// Settings, as the engine's defaults and the websockets baseline: no keepalive pings (ws sends
// none unless the application does), 16 MiB message limit (maxPayload), listen backlog 4096.
// Compression: --compression deflate (the default here, as in baseline_server.py) offers
// permessage-deflate with ws' own parameters and threshold option set to 1024 bytes (ws' default:
// messages under 1 KB go out uncompressed; ws creates its zlib contexts on first use); none
// (ws' own default, perMessageDeflate: false) declines it. Only the idle workload's clients offer
// it; the throughput workloads' clients do not, so no server compresses there.
//
// Broadcasts encode the JSON once and send the same string to every member (ws encodes a string
// to UTF-8 per send, as a plain `client.send(text)` loop does). No optional native add-ons
// (bufferutil, utf-8-validate): `npm install ws` alone, ws' pure-JS masking and Node's own
// UTF-8 check.
//
// Prints `ready: 127.0.0.1:PORT` once listening; stops on SIGINT/SIGTERM.

import { randomBytes } from 'node:crypto'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { WebSocket, WebSocketServer } from 'ws'

const options = { port: '0', backlog: '4096', compression: 'deflate' }
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, '')
  if (!(name in options) || process.argv[i + 1] === undefined) {
    console.error('usage: node ws_server.mjs [--port 0] [--backlog 4096] [--compression deflate|none]')
    process.exit(2)
  }
  options[name] = process.argv[i + 1]
}
if (!['deflate', 'none'].includes(options.compression)) {
  console.error(`--compression deflate|none, not ${options.compression}`)
  process.exit(2)
}

const TICK_MS = 1000 // between runs of a connection's timer

const rooms = new Map() // room name -> Set of sockets

const newId = () => randomBytes(6).toString('hex') // 12 hex digits, as the baseline's

function parse (data) {
  let value
  try {
    value = JSON.parse(data)
  } catch {
    return null
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : null
}

function broadcast (members, text, except) {
  for (const client of members) {
    if (client !== except && client.readyState === WebSocket.OPEN) client.send(text)
  }
}

function chat (ws) {
  const joined = new Set()
  ws.send(JSON.stringify({ type: 'connected', id: newId() }))
  ws.on('message', (data) => {
    const msg = parse(data)
    if (msg === null) return
    if (msg.type === 'join') {
      let room = rooms.get('chat')
      if (room === undefined) rooms.set('chat', (room = new Set()))
      room.add(ws)
      joined.add('chat')
      broadcast(room, JSON.stringify({ type: 'user-joined', username: msg.username ?? null }), ws)
    } else if (msg.type === 'message') {
      const room = rooms.get('chat')
      if (room === undefined) return
      broadcast(room, JSON.stringify({
        type: 'chat-message',
        username: msg.username ?? null,
        message: msg.message ?? null,
        timestamp: Date.now()
      }))
    }
  })
  ws.on('close', () => {
    for (const name of joined) {
      const room = rooms.get(name)
      if (room === undefined) continue
      room.delete(ws)
      if (room.size === 0) rooms.delete(name)
    }
  })
}

function ping (ws) {
  const id = newId()
  ws.on('message', (data) => {
    const msg = parse(data)
    if (msg !== null && msg.type === 'ping') {
      ws.send(JSON.stringify({ type: 'pong', seq: msg.seq ?? null, id, timestamp: Date.now() }))
    }
  })
}

function idle () {} // accept, then ignore everything

// A timer per connection, the way Node offers it: a setTimeout re-armed at each run one interval
// after the time it was due (no drift), cleared when the client leaves. The delay is rounded to
// the millisecond: Node keeps one timer list per distinct delay. `later`: the timer starts when
// the client sends "start".
function tick (send, later) {
  return (ws) => {
    const session = {}
    let count = 0
    let timer = null
    let due = 0
    const run = () => {
      count += 1
      if (send) {
        ws.send(JSON.stringify({ n: count }))
      } else {
        session.n = count
      }
      arm()
    }
    const arm = () => {
      due += TICK_MS
      timer = setTimeout(run, Math.max(1, Math.round(due - performance.now())))
    }
    const start = () => {
      due = performance.now()
      arm()
    }
    if (!later) start()
    ws.on('message', (data, isBinary) => {
      if (later && timer === null && !isBinary && data.toString() === 'start') start()
    })
    ws.on('close', () => clearTimeout(timer))
  }
}

const routes = new Map([
  ['/ws/chat', chat],
  ['/ws/ping', ping],
  ['/ws/idle', idle],
  ['/ws/tick/set', tick(false, false)],
  ['/ws/tick/send', tick(true, false)],
  ['/ws/tick/later', tick(false, true)]
])

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: options.compression === 'deflate' ? { threshold: 1024 } : false
})

wss.on('connection', (ws, request) => {
  ws.on('error', () => {}) // a client gone without a close frame, or a protocol error
  routes.get(request.url.split('?', 1)[0])(ws)
})

const server = http.createServer((request, response) => {
  response.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found\n')
})

server.on('upgrade', (request, socket, head) => {
  if (!routes.has(request.url.split('?', 1)[0])) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nNot found\n')
    return
  }
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
})

server.listen({ port: Number(options.port), host: '127.0.0.1', backlog: Number(options.backlog) }, () => {
  const { port } = server.address()
  console.log(`ready: 127.0.0.1:${port} (backlog ${options.backlog}, compression ${options.compression})`)
})

function stop () {
  for (const ws of wss.clients) ws.terminate()
  server.close()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
