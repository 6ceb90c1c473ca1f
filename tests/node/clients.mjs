// Drives a running scenario-engine with Node's `ws` client and prints what it saw as JSON.
//   node clients.mjs BASE_URL      (e.g. ws://127.0.0.1:8765)
import WebSocket from 'ws'

const base = process.argv[2]
const timeout = (ms) => new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), ms))

function open (path) {
  const ws = new WebSocket(base + path)
  const inbox = []
  const waiters = []
  ws.on('message', (data, isBinary) => {
    const item = isBinary ? { binary: [...data] } : JSON.parse(data.toString())
    const waiter = waiters.shift()
    if (waiter) waiter(item); else inbox.push(item)
  })
  const next = () => Promise.race([
    inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => waiters.push(resolve)),
    timeout(5000)
  ])
  const opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject) })
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  return { ws, next, opened, closed, send: (value) => ws.send(JSON.stringify(value)) }
}

async function chat () {
  const alice = open('/api/ws/chat')
  const bob = open('/api/ws/chat')
  await Promise.all([alice.opened, bob.opened])
  const welcome = [await alice.next(), await bob.next()]
  alice.send({ type: 'join', username: 'Alice' })
  await new Promise((resolve) => setTimeout(resolve, 100))
  bob.send({ type: 'join', username: 'Bob' })
  const joined = await alice.next()
  alice.send({ type: 'message', username: 'Alice', message: 'Hello!' })
  const messages = [await alice.next(), await bob.next()]
  const extensions = alice.ws.extensions
  alice.ws.close()
  const left = await bob.next()
  bob.ws.close()
  return { welcome, joined, messages, left, extensions }
}

async function privateRoute () {
  const results = {}
  for (const [name, query] of [['none', ''], ['bad', '?token=nope'], ['alice', '?token=alice-token']]) {
    const client = open('/api/ws/private' + query)
    await client.opened
    if (name === 'alice') {
      results[name] = await client.next()
      client.ws.close()
    } else {
      results[name] = await Promise.race([client.closed, timeout(5000)])
    }
  }
  return results
}

async function echoBinary () {
  const client = open('/echo')
  await client.opened
  client.ws.send(Buffer.from([0, 1, 2, 255]))
  const back = await client.next()
  client.ws.close()
  return back
}

const report = { chat: await chat(), private: await privateRoute(), echo: await echoBinary() }
console.log(JSON.stringify(report))
process.exit(0)
