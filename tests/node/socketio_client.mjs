// Drives a Socket.IO 4 server with the real npm `socket.io-client` (v4) over the WebSocket
// transport only (Engine.IO 4: ws://host:port/socket.io/?EIO=4&transport=websocket), and prints
// what it saw as JSON lines.
//
//   node socketio_client.mjs URL SCENARIO [OPTIONS_JSON] [DURATION_MS]
//
//   URL           http(s):// or ws(s):// base; a path names the namespace, not the HTTP path
//                 (http://127.0.0.1:8000/admin = namespace "/admin"); OPTIONS.path sets the
//                 HTTP path (default "/socket.io")
//   SCENARIO      one of:
//     connect         connect, report socket.id, then disconnect()                 ok on `connect`
//     room-events     connect, emit OPTIONS.join (default {"event":"join","args":["room1"]}),
//                     then each of OPTIONS.emits (default []: a list of {"event", "args"}) in
//                     order, then collect incoming events (counted from the connection on)
//                     until OPTIONS.expectCount of them (default 1)
//                     or until one named OPTIONS.until arrives                  ok when collected
//     ack             connect, emit OPTIONS.event (default "echo") with OPTIONS.args (default
//                     ["hello"]) and an ack callback; report the ack's args     ok when acked
//                     (and equal to OPTIONS.expectAck when given)
//     stay-connected  connect and stay connected for DURATION_MS (or OPTIONS.durationMs, default
//                     3000); report pings and disconnects                       ok when no disconnect
//                     (and at least OPTIONS.minPings pings when given)
//     refused         connect to a server that refuses with a CONNECT_ERROR packet (44{...})
//                     ok on `connect_error` from that packet (not a transport error), without
//                     `connect` (and err.message equal to
//                     OPTIONS.expectMessage when given)
//   OPTIONS_JSON  optional JSON object, every key optional:
//     timeoutMs     overall timeout (default 10000, or DURATION_MS + 10000); on timeout exit 3
//     path          Engine.IO HTTP path (default "/socket.io")
//     auth          object sent in the CONNECT packet (40{...})
//     query         extra query parameters of the WebSocket URL
//     reconnection  Manager option (default false here; the library's default is true)
//     event, args   for `ack`; args may hold {"$binary": "<base64>"} for binary attachments
//     join          for `room-events`: {"event": NAME, "args": [...]} emitted once connected
//     emits         for `room-events`: [{"event": NAME, "args": [...]}, ...] emitted after it
//     expectCount, until, expectAck, minPings, expectMessage   see the scenarios
//     ackReply      args this client answers server ack requests with (default ["ok"])
//     disconnect    false to leave the connection open at the end (default: disconnect())
//     packets       false to stop printing Engine.IO packets (default true)
//
// Output: one JSON object per line, {"obs": KIND, ...}: packet-in / packet-out (each Engine.IO
// packet with its type and data as the client parsed or made it), connect, event (with `ackId`
// when the server asked for an ack), ack, ping, connect_error, disconnect, close; then
// {"summary": {...}} with "ok". Binary values print as {"$binary": "<base64>"}.
// Exit status: 0 the script completed as expected; 1 unexpected outcome; 2 usage; 3 timeout.
import { io } from 'socket.io-client'

const [url, scenario, ...rest] = process.argv.slice(2)
let options = {}
let durationArg
try {
  for (const arg of rest) {
    if (/^\d+$/.test(arg)) durationArg = Number(arg)
    else options = JSON.parse(arg)
  }
} catch (err) {
  console.error(`OPTIONS_JSON is not JSON: ${err.message}`)
  process.exit(2)
}
const SCENARIOS = ['connect', 'room-events', 'ack', 'stay-connected', 'refused']
if (!url || !SCENARIOS.includes(scenario)) {
  console.error(`usage: node socketio_client.mjs URL {${SCENARIOS.join('|')}} [OPTIONS_JSON] [DURATION_MS]`)
  process.exit(2)
}
const durationMs = durationArg ?? options.durationMs ?? 3000

// JSON-safe copies: binary becomes {"$binary": base64}; functions (ack callbacks) are dropped.
function plain (value) {
  if (Buffer.isBuffer(value)) return { $binary: value.toString('base64') }
  if (value instanceof ArrayBuffer) return { $binary: Buffer.from(value).toString('base64') }
  if (ArrayBuffer.isView(value)) return { $binary: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') }
  if (Array.isArray(value)) return value.filter((v) => typeof v !== 'function').map(plain)
  if (value && typeof value === 'object') {
    if (value instanceof Error) return { message: value.message, ...(value.data !== undefined ? { data: plain(value.data) } : {}) }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  }
  return value
}
// The inverse for arguments given on the command line.
function revive (value) {
  if (Array.isArray(value)) return value.map(revive)
  if (value && typeof value === 'object') {
    if (typeof value.$binary === 'string' && Object.keys(value).length === 1) return Buffer.from(value.$binary, 'base64')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]))
  }
  return value
}

const started = Date.now()
function observe (obs, fields = {}) {
  console.log(JSON.stringify({ obs, ms: Date.now() - started, ...plain(fields) }))
}
let socket
const counters = { connects: 0, disconnects: [], pings: 0, events: [] }
let finishing = false
function finish (ok, fields = {}) {
  if (finishing) return
  finishing = true
  if (socket && options.disconnect !== false) socket.disconnect()
  // Give the "41" packet and the close frame a moment to leave before exiting.
  setTimeout(() => {
    console.log(JSON.stringify({ summary: { scenario, ok, ms: Date.now() - started, ...plain(fields) } }))
    process.exit(ok ? 0 : 1)
  }, 100)
}
setTimeout(() => {
  console.log(JSON.stringify({ summary: { scenario, ok: false, timeout: true, ms: Date.now() - started, ...plain(counters) } }))
  process.exit(3)
}, options.timeoutMs ?? (scenario === 'stay-connected' ? durationMs + 10000 : 10000))

socket = io(url, {
  transports: ['websocket'],
  path: options.path ?? '/socket.io',
  reconnection: options.reconnection ?? false,
  forceNew: true,
  ...(options.auth !== undefined ? { auth: options.auth } : {}),
  ...(options.query !== undefined ? { query: options.query } : {})
})

function watchEngine (engine) {
  if (options.packets === false || !engine) return
  engine.on('packet', (packet) => observe('packet-in', { type: packet.type, data: packet.data }))
  engine.on('packetCreate', (packet) => observe('packet-out', { type: packet.type, data: packet.data }))
  engine.on('close', (reason, description) => observe('close', { reason, description: description?.description ?? null }))
}
watchEngine(socket.io.engine)
socket.io.on('reconnect_attempt', (attempt) => {
  observe('reconnect_attempt', { attempt })
  setImmediate(() => watchEngine(socket.io.engine))
})
socket.io.on('ping', () => { counters.pings++; observe('ping') })

const ackReply = options.ackReply ?? ['ok']
socket.onAny((event, ...args) => {
  const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null
  counters.events.push({ event, args })
  observe('event', { event, args, ...(ack ? { ackRequested: true } : {}) })
  if (ack) ack(...revive(ackReply))
})
socket.on('connect', () => {
  counters.connects++
  observe('connect', { id: socket.id, engineId: socket.io.engine.id, transport: socket.io.engine.transport.name })
})
socket.on('disconnect', (reason, description) => {
  counters.disconnects.push(reason)
  observe('disconnect', { reason, description: description?.description ?? null })
  // Without reconnection nothing more can happen: an unasked-for disconnect ends the script.
  if (!finishing && !(options.reconnection ?? false)) {
    finish(false, { error: `disconnected: ${reason}`, ...counters, disconnects: [...counters.disconnects] })
  }
})
socket.on('connect_error', (err) => {
  observe('connect_error', { message: err.message, data: err.data ?? null, type: err.type ?? null, description: String(err.description?.message ?? err.description ?? '') || null })
  if (scenario === 'refused') {
    // A transport failure (server down, handshake refused) is a TransportError, not a refusal.
    const ok = counters.connects === 0 && err.type !== 'TransportError' &&
      (options.expectMessage === undefined || options.expectMessage === err.message)
    finish(ok, { message: err.message, data: err.data ?? null, type: err.type ?? null, connects: counters.connects })
  } else if (!(options.reconnection ?? false)) {
    finish(false, { error: err.message })
  }
})

const connected = new Promise((resolve) => socket.once('connect', resolve))
await connected
const deepEqual = (a, b) => JSON.stringify(a) === JSON.stringify(b)

switch (scenario) {
  case 'connect':
    finish(true, { id: socket.id, engineId: socket.io.engine.id, transport: socket.io.engine.transport.name })
    break
  case 'refused':
    finish(false, { error: 'connected although a refusal was expected', id: socket.id })
    break
  case 'ack': {
    const event = options.event ?? 'echo'
    const args = revive(options.args ?? ['hello'])
    socket.emit(event, ...args, (...ackArgs) => {
      observe('ack', { args: ackArgs })
      const ok = options.expectAck === undefined || deepEqual(plain(ackArgs), options.expectAck)
      finish(ok, { ack: ackArgs })
    })
    break
  }
  case 'room-events': {
    const join = options.join ?? { event: 'join', args: ['room1'] }
    const expectCount = options.expectCount ?? 1
    // Every event since the connection counts, including any the server sent with its CONNECT.
    const check = () => {
      const done = options.until !== undefined
        ? counters.events.some((e) => e.event === options.until)
        : counters.events.length >= expectCount
      if (done) finish(true, { events: counters.events })
    }
    socket.onAny(() => setImmediate(check))
    socket.emit(join.event, ...revive(join.args ?? []))
    for (const emit of options.emits ?? []) socket.emit(emit.event, ...revive(emit.args ?? []))
    setImmediate(check)
    break
  }
  case 'stay-connected':
    setTimeout(() => {
      const ok = counters.disconnects.length === 0 && socket.connected &&
        (options.minPings === undefined || counters.pings >= options.minPings)
      finish(ok, { id: socket.id, pings: counters.pings, disconnects: [...counters.disconnects], durationMs })
    }, durationMs)
    break
}
