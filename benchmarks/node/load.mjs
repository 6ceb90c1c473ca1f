// Load generator of benchmarks/run.py: Node's ws as an efficient client, in its own process.
//
//   node load.mjs fanout  --url ws://127.0.0.1:PORT/ws/chat[,ws://…] [--clients 100] [--senders 10]
//                         [--warmup 2] [--duration 8]
//   node load.mjs reqreply --url ws://127.0.0.1:PORT/ws/ping[,ws://…] [--clients 50] [--warmup 2]
//                         [--duration 8]
//   node load.mjs accept  --url ws://127.0.0.1:PORT/ws/idle [--clients 5000]
//   node load.mjs idle    --url ws://127.0.0.1:PORT/ws/idle [--clients 2000]
//   node load.mjs hold    --url ws://127.0.0.1:PORT/ws/tick/set [--clients 10000]
//   node load.mjs rooms   --url ws://127.0.0.1:PORT/ws/rooms [--rooms 200000]
//
// Writes one JSON object per line on stdout. Throughput workloads print {"event":"start"} when
// the measured window opens and {"event":"end"} when it closes (run.py reads the server's CPU
// time from /proc at each), then {"event":"result", …} with the counts, the window's length,
// latencies and this process's own CPU time over the window (process.cpuUsage()). The accept
// storm prints "start" just before it opens its sockets and "end" once all are open. Idle prints
// {"event":"ready"} once every connection is open and waits for a line on stdin before closing.
// Hold (the timer workload) opens raw clients that read and count what they receive, prints
// {"event":"ready"}, then answers each "mark" line on stdin with {"event":"mark", …} (messages
// received so far, this process's CPU time, clients closed by the server), has every client
// send TEXT at "send TEXT", and ends at "close".
// Rooms sends one {"type":"join","room":"r<i>"} per room and then {"type":"done"}, and reports
// whether the server answered "done" or closed the connection (with which code) first.
//
// Fanout and reqreply with several URLs (comma-separated: the processes of one mock, joined by a
// backplane) spread the clients over them in turn (fan-out's senders too).
//
// Compression: fanout, reqreply, accept, hold and rooms do not offer permessage-deflate (neither
// server compresses then); idle offers it (ws' default offer), so that it is negotiated.

import net from 'node:net'
import { performance } from 'node:perf_hooks'
import readline from 'node:readline'
import WebSocket from 'ws'

const mode = process.argv[2]
const options = {}
for (let i = 3; i < process.argv.length; i += 2) {
  options[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
}
const urls = (options.url ?? '').split(',')
const url = urls[0]
const num = (name, fallback) => (options[name] === undefined ? fallback : Number(options[name]))

function emit (object) {
  process.stdout.write(JSON.stringify(object) + '\n') // synchronous on Linux pipes
}

function fail (message) {
  emit({ event: 'error', message })
  process.exit(1)
}

// Raw clients (fan-out, accept storm) send one fixed key; the server must answer with this.
const HANDSHAKE_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const HANDSHAKE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' // RFC 6455 section 1.3

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  return sorted[Math.max(0, index)]
}

// The figures every measured window reports: latency percentiles and the load generator's CPU.
function windowFigures (latencies, seconds, clientCpu) {
  latencies.sort((a, b) => a - b)
  return {
    latency_ms: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), n: latencies.length },
    client_cpu_seconds: clientCpu,
    client_cpu_share: clientCpu / seconds
  }
}

function cpuSeconds (start) {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1e6
}

// Opens `count` connections (at most `parallel` handshakes at a time), resolves when all are
// open; `setup(ws, i)` is called on each before it opens.
async function openAll (count, parallel, wsOptions, setup) {
  const sockets = new Array(count)
  let next = 0
  async function worker () {
    while (next < count) {
      const i = next++
      await new Promise((resolve, reject) => {
        const ws = new WebSocket(urls[i % urls.length], wsOptions)
        sockets[i] = ws
        setup(ws, i)
        ws.once('open', resolve)
        ws.once('error', reject)
      })
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker))
  return sockets
}

// A window: warm up, then measure for `duration` seconds; `state.measuring` says which.
async function measuredWindow (state, warmup, duration) {
  await sleep(warmup * 1000)
  state.measuring = true
  const cpu = process.cpuUsage()
  const t0 = performance.now()
  emit({ event: 'start' })
  await sleep(duration * 1000)
  state.measuring = false
  const seconds = (performance.now() - t0) / 1000
  const clientCpu = cpuSeconds(cpu)
  emit({ event: 'end' })
  return { seconds, clientCpu }
}

// A minimal WebSocket client on a raw TCP socket, for the fan-out workload where every client
// receives ~1,000+ messages a second: it checks the handshake (101 and Sec-WebSocket-Accept),
// splits the server's frames (unmasked, unfragmented) and hands each text payload over as a
// Buffer slice, without the per-message work of a full client (events, UTF-8 validation,
// copies). Sends masked text frames.
class RawClient {
  constructor (url, onMessage) {
    const target = new URL(url)
    // onread: reads land in this client's own buffer and come straight to data(), without a
    // new Buffer and a 'data' event per read (a payload is only valid during onMessage).
    const socket = net.connect({
      port: Number(target.port),
      host: target.hostname,
      onread: { buffer: Buffer.allocUnsafe(16384), callback: (n, buf) => this.data(buf.subarray(0, n)) }
    })
    socket.setNoDelay(true)
    this.socket = socket
    this.onMessage = onMessage
    this.open = false
    this.head = ''
    this.buf = null
    this.unexpectedClose = false
    this.closeCode = null // the code of the server's close frame, once one came
    this.opened = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject })
    socket.once('connect', () => socket.write(handshakeRequest(target)))
    socket.on('error', (err) => this.reject(err))
    socket.on('close', () => {
      this.reject(new Error('closed before the handshake completed'))
      if (!this.terminated) this.unexpectedClose = true
    })
  }

  data (chunk) {
    if (!this.open) {
      this.head += chunk.toString('latin1')
      const end = this.head.indexOf('\r\n\r\n')
      if (end < 0) return
      if (!this.head.startsWith('HTTP/1.1 101') || !this.head.includes(HANDSHAKE_ACCEPT)) {
        this.reject(new Error(`not a WebSocket handshake: ${this.head.slice(0, 200)}`))
        this.socket.destroy()
        return
      }
      this.open = true
      chunk = Buffer.from(this.head.slice(end + 4), 'latin1')
      this.head = ''
      this.resolve()
      if (chunk.length === 0) return
    }
    const buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk])
    let offset = 0
    while (buf.length - offset >= 2) {
      const b0 = buf[offset]
      let length = buf[offset + 1]
      let header = 2
      if (length & 0x80) fail('a server frame is masked')
      if (length === 126) {
        if (buf.length - offset < 4) break
        length = buf.readUInt16BE(offset + 2)
        header = 4
      } else if (length === 127) {
        if (buf.length - offset < 10) break
        length = Number(buf.readBigUInt64BE(offset + 2))
        header = 10
      }
      if (buf.length - offset < header + length) break
      const start = offset + header
      offset = start + length
      if (b0 === 0x81) { // FIN + text
        this.onMessage(buf.subarray(start, offset))
      } else if ((b0 & 0x0f) === 0x8) { // close
        this.closeCode = length >= 2 ? buf.readUInt16BE(start) : 1005
        this.socket.destroy()
        return
      } else if ((b0 & 0x0f) !== 0x9 && (b0 & 0x0f) !== 0xa) { // pings and pongs: ignored
        fail(`unexpected frame 0x${b0.toString(16)}`)
      }
    }
    this.buf = offset === buf.length ? null : Buffer.from(buf.subarray(offset)) // a copy
  }

  send (text) {
    this.socket.write(RawClient.frame(text))
  }

  // A masked text frame.
  static frame (text) {
    const payload = Buffer.from(text)
    const length = payload.length
    const header = length < 126 ? 2 : length < 65536 ? 4 : 10
    const frame = Buffer.allocUnsafe(header + 4 + length)
    frame[0] = 0x81
    if (header === 2) {
      frame[1] = 0x80 | length
    } else if (header === 4) {
      frame[1] = 0x80 | 126
      frame.writeUInt16BE(length, 2)
    } else {
      frame[1] = 0x80 | 127
      frame.writeBigUInt64BE(BigInt(length), 2)
    }
    frame.writeUInt32BE((Math.random() * 0x100000000) >>> 0, header)
    for (let j = 0; j < length; j++) frame[header + 4 + j] = payload[j] ^ frame[header + (j & 3)]
    return frame
  }

  terminate () {
    this.terminated = true
    this.socket.destroy()
  }
}

function handshakeRequest (target) {
  return `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`
}

// The same interface on ws: { opened, send(text), terminate() }, onMessage(Buffer).
function wsClient (url, onMessage) {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  ws.on('message', onMessage)
  return {
    opened: new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) }),
    send: (text) => ws.send(text),
    terminate: () => ws.terminate(),
    get unexpectedClose () { return false }
  }
}

// Opens `count` clients of `make(url, onMessage)`, at most `parallel` handshakes at a time.
async function openClients (clients, parallel, make, onMessageOf) {
  const count = clients.length
  let next = 0
  async function worker () {
    while (next < count) {
      const i = next++
      clients[i] = make(urls[i % urls.length], onMessageOf(i))
      await clients[i].opened
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker))
  return clients
}

async function fanout () {
  const clients = num('clients', 100)
  const senders = num('senders', 10)
  const clientKind = options.client ?? 'raw'
  const make = { raw: (u, f) => new RawClient(u, f), ws: wsClient }[clientKind]
  if (!make) fail(`--client raw|ws, not ${clientKind}`)
  const expectedJoins = (clients * (clients - 1)) / 2 // user-joined: to the room minus self
  const state = { measuring: false, running: true }
  let joinedSeen = 0
  let deliveries = 0
  let sent = 0
  const latencies = []
  const text = 'The quick brown fox jumps over the lazy dog'
  let connected = 0
  const sendTimes = new Float64Array(senders)
  const seqs = new Int32Array(senders)
  let settled = false
  let whenSettled
  const settledPromise = new Promise((resolve) => { whenSettled = resolve })
  const sockets = new Array(clients)

  function sendNext (i) {
    seqs[i] += 1
    sendTimes[i] = performance.now()
    if (state.measuring) sent += 1
    sockets[i].send(`{"type":"message","username":"s${i}","message":"${seqs[i]} ${text}"}`)
  }

  await openClients(sockets, 50, make, (i) => {
    const isSender = i < senders
    const mine = `"username":"s${i}"`
    return (data) => {
      if (!settled) { // setup: parse everything, count the user-joined notices
        const msg = JSON.parse(data.toString())
        if (msg.type === 'connected') {
          connected += 1
          sockets[i].send(JSON.stringify({ type: 'join', username: isSender ? `s${i}` : `u${i}` }))
        } else if (msg.type === 'user-joined') {
          joinedSeen += 1
          if (joinedSeen === expectedJoins) {
            // Across processes, two clients that join at once on two of them may both hear of
            // the other: more notices than in one process, still on their way.
            if (urls.length === 1) { settled = true; whenSettled() } else {
              setTimeout(() => { settled = true; whenSettled() }, 500)
            }
          }
        } else {
          fail(`unexpected message during setup: ${data}`)
        }
        return
      }
      if (state.measuring) deliveries += 1
      // Only senders look inside: is this my own message back?
      if (isSender && state.running && data.includes(mine)) {
        if (state.measuring) latencies.push(performance.now() - sendTimes[i])
        sendNext(i)
      }
    }
  })
  const timeout = setTimeout(() => fail(`setup: ${connected}/${clients} connected, ` +
    `${joinedSeen}/${expectedJoins} user-joined seen`), 20000)
  await settledPromise
  clearTimeout(timeout)
  for (let i = 0; i < senders; i++) sendNext(i)
  const { seconds, clientCpu } = await measuredWindow(state, num('warmup', 2), num('duration', 8))
  state.running = false
  await sleep(200)
  const closedEarly = sockets.filter((c) => c.unexpectedClose).length
  for (const c of sockets) c.terminate()
  emit({
    event: 'result',
    mode: 'fanout',
    client: clientKind,
    clients,
    senders,
    closed_early: closedEarly,
    seconds,
    sent,
    deliveries,
    per_second: deliveries / seconds,
    ...windowFigures(latencies, seconds, clientCpu)
  })
}

async function reqreply () {
  const clients = num('clients', 50)
  const state = { measuring: false, running: true }
  let replies = 0
  let bad = 0
  const latencies = []
  const seqs = new Int32Array(clients)
  const sendTimes = new Float64Array(clients)

  function sendNext (ws, i) {
    seqs[i] += 1
    sendTimes[i] = performance.now()
    ws.send(`{"type":"ping","seq":${seqs[i]}}`)
  }

  const sockets = await openAll(clients, 50, { perMessageDeflate: false }, (ws, i) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString())
      if (msg.type !== 'pong' || msg.seq !== seqs[i] || typeof msg.id !== 'string' ||
          typeof msg.timestamp !== 'number') {
        bad += 1
        if (bad === 1) emit({ event: 'warning', message: `unexpected reply: ${data}` })
      }
      if (state.measuring) {
        replies += 1
        latencies.push(performance.now() - sendTimes[i])
      }
      if (state.running) sendNext(ws, i)
    })
  })
  sockets.forEach((ws, i) => sendNext(ws, i))
  const { seconds, clientCpu } = await measuredWindow(state, num('warmup', 2), num('duration', 8))
  state.running = false
  await sleep(200)
  for (const ws of sockets) ws.terminate()
  emit({
    event: 'result',
    mode: 'reqreply',
    clients,
    seconds,
    replies,
    bad,
    per_second: replies / seconds,
    ...windowFigures(latencies, seconds, clientCpu)
  })
}

// The accept storm opens raw TCP sockets and writes a fixed opening handshake, then waits for
// "101 Switching Protocols": far cheaper per connection than ws' client (http.request, a new
// key, …), so that the time measured is the server's. Every response is checked to be a 101
// with the Sec-WebSocket-Accept that the key calls for.

async function accept () {
  const clients = num('clients', 5000)
  const target = new URL(url)
  const port = Number(target.port)
  const host = target.hostname
  const request = Buffer.from(handshakeRequest(target))
  const tcpMs = new Float64Array(clients).fill(NaN)
  const openMs = new Float64Array(clients).fill(NaN)
  const sockets = new Array(clients)
  let opened = 0
  let errors = 0
  let firstError = null
  let whenDone
  const done = new Promise((resolve) => { whenDone = resolve })
  const settle = () => { if (opened + errors === clients) whenDone() }
  emit({ event: 'start' })
  const cpu = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < clients; i++) {
    const socket = net.connect({ port, host })
    sockets[i] = socket
    let response = ''
    let finished = false
    const failed = (why) => {
      if (finished) return
      finished = true
      errors += 1
      firstError ??= why
      settle()
    }
    socket.once('connect', () => {
      tcpMs[i] = performance.now() - t0
      socket.write(request)
    })
    socket.on('data', (chunk) => {
      if (finished) return
      response += chunk.toString('latin1')
      if (!response.includes('\r\n\r\n')) return
      if (!response.startsWith('HTTP/1.1 101') || !response.includes(HANDSHAKE_ACCEPT)) {
        failed(`not a WebSocket handshake: ${JSON.stringify(response.slice(0, 200))}`)
        return
      }
      finished = true
      openMs[i] = performance.now() - t0
      opened += 1
      settle()
    })
    socket.on('error', (err) => failed(String(err)))
    socket.on('close', () => failed('closed before the handshake completed'))
  }
  const createdMs = performance.now() - t0
  await done
  const totalMs = performance.now() - t0
  const clientCpu = cpuSeconds(cpu)
  emit({ event: 'end' })
  for (const socket of sockets) socket.destroy()
  const opens = Array.from(openMs).filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  const tcps = Array.from(tcpMs).filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  emit({
    event: 'result',
    mode: 'accept',
    clients,
    opened,
    errors,
    first_error: firstError,
    all_open_ms: totalMs,
    create_loop_ms: createdMs,
    // Times from the start of the storm (all sockets are created within create_loop_ms).
    open_ms: { p50: percentile(opens, 50), p99: percentile(opens, 99), max: opens.at(-1) },
    tcp_connect_ms: { p50: percentile(tcps, 50), p99: percentile(tcps, 99), max: tcps.at(-1) },
    // A dropped SYN is retransmitted after 1 s: a connect later than that probably waited.
    tcp_connect_over_1s: tcps.filter((x) => x > 1000).length,
    client_cpu_seconds: clientCpu,
    client_cpu_share: clientCpu / (totalMs / 1000)
  })
  await sleep(100)
}

async function idle () {
  const clients = num('clients', 2000)
  // ws' default offer: permessage-deflate with client_max_window_bits.
  const sockets = await openAll(clients, 100, { perMessageDeflate: true }, () => {})
  const negotiated = sockets.filter((ws) => ws.extensions.startsWith('permessage-deflate')).length
  emit({ event: 'ready', clients, negotiated })
  const lines = readline.createInterface({ input: process.stdin })
  for await (const _ of lines) break // eslint-disable-line no-unused-vars
  for (const ws of sockets) ws.terminate()
  emit({ event: 'result', mode: 'idle', clients, negotiated })
}

// The timer workload: many clients that hold their connection open and read. The server's timers
// send to them (or not); run.py measures the server's CPU between two "mark"s.
async function hold () {
  const clients = num('clients', 10000)
  let messages = 0
  const sockets = new Array(clients)
  await openClients(sockets, num('parallel', 100), (u, f) => new RawClient(u, f), () => () => {
    messages += 1
  })
  const closed = () => sockets.filter((c) => c.unexpectedClose).length
  emit({ event: 'ready', clients, closed: closed() })
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line === 'mark') {
      const cpu = process.cpuUsage()
      emit({
        event: 'mark',
        messages,
        client_cpu_seconds: (cpu.user + cpu.system) / 1e6,
        closed: closed()
      })
    } else if (line.startsWith('send ')) { // every client sends the rest of the line
      for (const c of sockets) c.send(line.slice(5))
      emit({ event: 'sent' })
    } else {
      break
    }
  }
  for (const c of sockets) c.terminate()
  emit({ event: 'result', mode: 'hold', clients, messages, closed: closed() })
}

// One client joins `rooms` distinct rooms as fast as it can write, then says "done": the server
// either answers "done" (every join taken) or closes the connection (a join refused).
async function rooms () {
  const count = num('rooms', 200000)
  let done = false
  const client = new RawClient(url, (data) => {
    if (JSON.parse(data.toString()).type === 'done') done = true
  })
  await client.opened
  const t0 = performance.now()
  const batch = []
  for (let i = 0; i < count; i++) {
    batch.push(RawClient.frame(`{"type":"join","room":"r${i}"}`))
    if (batch.length === 1000 || i === count - 1) {
      if (client.closeCode !== null || client.socket.destroyed) break
      const flushed = client.socket.write(Buffer.concat(batch))
      batch.length = 0
      if (!flushed) {
        await new Promise((resolve) => client.socket.once('drain', resolve).once('close', resolve))
      }
    }
  }
  if (client.closeCode === null && !client.socket.destroyed) client.send('{"type":"done"}')
  while (!done && client.closeCode === null && !client.socket.destroyed) await sleep(10)
  const seconds = (performance.now() - t0) / 1000
  client.terminate()
  emit({ event: 'result', mode: 'rooms', rooms: count, done, close_code: client.closeCode, seconds })
}

const modes = { fanout, reqreply, accept, idle, hold, rooms }
if (!modes[mode] || !url) {
  console.error('usage: node load.mjs fanout|reqreply|accept|idle|hold|rooms --url ws://HOST:PORT/PATH …')
  process.exit(2)
}
modes[mode]().then(() => process.exit(0), (err) => fail(String(err?.stack ?? err)))
