// Drives a `graphql-transport-ws` server with the real npm `graphql-ws` client (and, for the
// scenarios that need raw protocol control, with `ws` offering the same subprotocol), and prints
// what it saw as JSON lines.
//
//   node graphql_ws_client.mjs URL SCENARIO [OPTIONS_JSON]
//
//   URL           ws://host:port/path of the GraphQL-over-WebSocket endpoint
//   SCENARIO      one of:
//     subscribe                createClient() + subscribe(); collects every `next` payload until
//                              `complete` (ok) or an `error` message / close (not ok)
//     no-subprotocol-selected  createClient() + subscribe() against a server that selects no
//                              subprotocol; ok when the client surfaces an error (default
//                              expected message "Server sent no subprotocol") and never connects
//     subscribe-before-ack     raw: `subscribe` with no `connection_init`      expect 4401 "Unauthorized"
//     duplicate-id             raw: init, ack, two `subscribe` with one id      expect 4409 "Subscriber for <id> already exists"
//     no-init                  raw: send nothing                                expect 4408 "Connection initialisation timeout"
//     second-init              raw: init, ack, init again                       expect 4429 "Too many initialisation requests"
//     bad-message              raw: send OPTIONS.raw (default {"type":"bogus"})  expect 4400 "Invalid message received"
//   OPTIONS_JSON  optional JSON object, every key optional:
//     timeoutMs         overall timeout (default 10000); on timeout exit code 3
//     query             GraphQL document (default "subscription { greetings }")
//     variables, operationName, extensions   copied into the subscribe payload
//     connectionParams  `connection_init` payload (object; absent by default)
//     retryAttempts     client option (default 0 here; the library's default is 5)
//     retryWaitMs       fixed wait between retries (default 100; the library backs off 2^n s + 0.3-3 s)
//     id                subscription id (default: the client's own random UUID v4 / "1" for raw)
//     expectCount       subscribe: number of `next` payloads required (default: any)
//     expectError       subscribe: true when an `error` message is the expected outcome
//     expect            raw scenarios: {"code": N, "reason": "..."} to check instead of the
//                       reference server's; null to accept any close
//     expectMessage     no-subprotocol-selected: expected error message; null to accept any
//     raw               bad-message: the text frame to send (string, sent as is)
//     init              bad-message: true to do connection_init/ack before sending `raw`
//
// Output: one JSON object per line, {"obs": KIND, ...} (connecting, opened, connected, message,
// sent, next, error, complete, ping, pong, closed), then {"summary": {...}} with "ok".
// Exit status: 0 the script completed as expected; 1 unexpected outcome; 2 usage; 3 timeout.
import WebSocket from 'ws'
import { createClient } from 'graphql-ws'

const PROTOCOL = 'graphql-transport-ws'
const REFERENCE = {
  'subscribe-before-ack': { code: 4401, reason: 'Unauthorized' },
  'duplicate-id': (id) => ({ code: 4409, reason: `Subscriber for ${id} already exists` }),
  'no-init': { code: 4408, reason: 'Connection initialisation timeout' },
  'second-init': { code: 4429, reason: 'Too many initialisation requests' },
  'bad-message': { code: 4400, reason: 'Invalid message received' }
}

const [url, scenario, optionsText] = process.argv.slice(2)
if (!url || !scenario) {
  console.error('usage: node graphql_ws_client.mjs URL SCENARIO [OPTIONS_JSON]')
  process.exit(2)
}
let options
try {
  options = optionsText ? JSON.parse(optionsText) : {}
} catch (err) {
  console.error(`OPTIONS_JSON is not JSON: ${err.message}`)
  process.exit(2)
}
const started = Date.now()
const observations = []
function observe (obs, fields = {}) {
  const line = { obs, ms: Date.now() - started, ...fields }
  observations.push(line)
  console.log(JSON.stringify(line))
}
function finish (ok, fields = {}) {
  console.log(JSON.stringify({ summary: { scenario, ok, ms: Date.now() - started, ...fields } }))
  process.exit(ok ? 0 : 1)
}
setTimeout(() => {
  console.log(JSON.stringify({ summary: { scenario, ok: false, timeout: true, ms: Date.now() - started } }))
  process.exit(3)
}, options.timeoutMs ?? 10000)

function describeError (err) {
  if (Array.isArray(err)) return { payload: err } // GraphQL errors from an `error` message
  if (err && typeof err === 'object' && 'code' in err && 'reason' in err) {
    return { code: err.code, reason: String(err.reason), wasClean: err.wasClean }
  }
  if (err && typeof err === 'object') return { message: err.message, name: err.name ?? err.type }
  return { message: String(err) }
}

function subscribePayload () {
  const payload = { query: options.query ?? 'subscription { greetings }' }
  for (const key of ['variables', 'operationName', 'extensions']) {
    if (options[key] !== undefined) payload[key] = options[key]
  }
  return payload
}

// ---- scenarios through the real client ----------------------------------------------------

function realClient () {
  return createClient({
    url,
    webSocketImpl: WebSocket, // Node 20 has no global WebSocket
    lazy: true,
    retryAttempts: options.retryAttempts ?? 0,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, options.retryWaitMs ?? 100)),
    connectionParams: options.connectionParams,
    ...(options.id !== undefined ? { generateID: () => options.id } : {}),
    on: {
      connecting: (isRetry) => observe('connecting', { isRetry }),
      opened: (socket) => observe('opened', { protocol: socket.protocol }),
      connected: (socket, payload) => observe('connected', { payload: payload ?? null }),
      ping: (received, payload) => observe('ping', { received, payload: payload ?? null }),
      pong: (received, payload) => observe('pong', { received, payload: payload ?? null }),
      closed: (event) => observe('closed', describeError(event)),
      error: (err) => observe('socket-error', describeError(err))
    }
  })
}

function runSubscription (client) {
  return new Promise((resolve) => {
    const payloads = []
    client.subscribe(subscribePayload(), {
      next: (payload) => { payloads.push(payload); observe('next', { payload }) },
      error: (err) => { observe('error', describeError(err)); resolve({ payloads, error: describeError(err) }) },
      complete: () => { observe('complete'); resolve({ payloads, error: null }) }
    })
  })
}

const settle = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function subscribe () {
  const client = realClient()
  const { payloads, error } = await runSubscription(client)
  await settle(200) // let the lazy client's 1000 "Normal Closure" be observed
  await client.dispose()
  let ok = options.expectError ? error !== null : error === null
  if (ok && options.expectCount !== undefined) ok = payloads.length === options.expectCount
  finish(ok, { payloads, error })
}

async function noSubprotocolSelected () {
  const client = realClient()
  const { error } = await runSubscription(client)
  await settle(200)
  await client.dispose()
  const expected = options.expectMessage === undefined ? 'Server sent no subprotocol' : options.expectMessage
  const connected = observations.some((o) => o.obs === 'connected')
  const ok = error !== null && !connected && (expected === null || error.message === expected)
  finish(ok, { error, connected })
}

// ---- raw scenarios through `ws` -----------------------------------------------------------

function rawSocket () {
  const ws = new WebSocket(url, PROTOCOL)
  const inbox = []
  const waiters = []
  ws.on('message', (data, isBinary) => {
    let message
    if (isBinary) message = { binary: data.toString('hex') }
    else {
      try { message = JSON.parse(data.toString()) } catch { message = { text: data.toString() } }
    }
    observe('message', { data: message })
    const waiter = waiters.shift()
    if (waiter) waiter(message); else inbox.push(message)
  })
  const opened = new Promise((resolve, reject) => {
    ws.on('open', () => { observe('opened', { protocol: ws.protocol }); resolve() })
    ws.on('error', (err) => { observe('socket-error', describeError(err)); reject(err) })
  })
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => {
    const event = { code, reason: reason.toString() }
    observe('closed', event)
    resolve(event)
  }))
  const next = () => inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => waiters.push(resolve))
  const send = (value) => {
    const text = typeof value === 'string' ? value : JSON.stringify(value)
    observe('sent', { text })
    ws.send(text)
  }
  return { ws, opened, closed, next, send }
}

async function initAndAck (raw) {
  raw.send(options.connectionParams ? { type: 'connection_init', payload: options.connectionParams } : { type: 'connection_init' })
  const ack = await Promise.race([raw.next(), raw.closed.then(() => null)])
  if (!ack || ack.type !== 'connection_ack') finish(false, { error: 'no connection_ack', got: ack })
}

async function rawScenario () {
  const id = options.id ?? '1'
  const subscribeMessage = { id, type: 'subscribe', payload: subscribePayload() }
  const raw = rawSocket()
  await raw.opened
  const openedAt = Date.now()
  switch (scenario) {
    case 'subscribe-before-ack':
      raw.send(subscribeMessage)
      break
    case 'duplicate-id':
      await initAndAck(raw)
      raw.send(subscribeMessage)
      raw.send(subscribeMessage)
      break
    case 'no-init':
      break
    case 'second-init':
      await initAndAck(raw)
      raw.send({ type: 'connection_init' })
      break
    case 'bad-message':
      if (options.init) await initAndAck(raw)
      raw.send(options.raw ?? '{"type":"bogus"}')
      break
  }
  const event = await raw.closed
  const reference = REFERENCE[scenario]
  const expected = options.expect === undefined ? (typeof reference === 'function' ? reference(id) : reference) : options.expect
  const ok = expected === null || (event.code === expected.code && event.reason === expected.reason)
  finish(ok, { close: event, expected, closedAfterMs: Date.now() - openedAt })
}

const scenarios = {
  subscribe,
  'no-subprotocol-selected': noSubprotocolSelected,
  'subscribe-before-ack': rawScenario,
  'duplicate-id': rawScenario,
  'no-init': rawScenario,
  'second-init': rawScenario,
  'bad-message': rawScenario
}
if (!scenarios[scenario]) {
  console.error(`unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(', ')}`)
  process.exit(2)
}
try {
  await scenarios[scenario]()
} catch (err) {
  observe('exception', describeError(err))
  finish(false, { error: describeError(err) })
}
