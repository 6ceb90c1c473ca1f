// The inspector page: a live view of a running mock, fed by the server's own WebSocket
// (/__admin/live: a snapshot, then updates; docs/inspector.md), acting through the admin API.
//
// Everything shown that comes from the mock's clients (messages, ids, rooms, sessions, headers)
// is untrusted: it is only ever put in the page as text (textContent, never innerHTML), so a
// message cannot become markup or script. The Content-Security-Policy forbids inline scripts
// too, as a second line of defence.
"use strict";

(() => {
  const ADMIN = "/__admin";
  const FEED = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${ADMIN}/live`;
  // The page keeps this many events, the newest: the DOM stays small whatever the traffic.
  const MAX_EVENTS = 500;
  // Characters of a message shown on its summary line (the whole of it is in its details).
  const PREVIEW = 160;
  // Reconnection delays after the feed closes, doubling up to the last.
  const RETRY_MS = [500, 1000, 2000, 5000];

  const view = {
    routes: [], // [{path, file}] in the server's order
    files: [],
    connections: new Map(), // id -> row, as the feed sends it
    // The route of every connection seen, kept after it closes: its old events still filter.
    routeOf: new Map(),
    events: [], // oldest first, at most MAX_EVENTS
    lastSeq: 0,
    notShown: 0, // events the server left out of its updates (the view fell behind)
    states: new Map(), // file -> value (null: too large to send; read it from the admin API)
    editing: null, // the file whose state is being edited, and the state it started from
  };

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat("en");

  // An element with text content and attributes; children appended as they are given.
  function el(tag, { text, className, attrs, title } = {}, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (title) node.title = title;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // Local time of an ISO timestamp, to the millisecond (or to the second, when ``short``).
  function clock(iso, short = false) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    const pad = (n, width = 2) => String(n).padStart(width, "0");
    const seconds = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
    return short ? seconds : `${seconds}.${pad(date.getMilliseconds(), 3)}`;
  }

  function plural(count, word) {
    return `${number.format(count)} ${word}${count === 1 ? "" : "s"}`;
  }

  // A message's text, pretty-printed when it is JSON, as it is otherwise.
  function pretty(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }

  function compact(value) {
    return value === undefined ? "" : JSON.stringify(value);
  }

  // ---- the feed ----------------------------------------------------------------------------
  let retries = 0;

  function connect() {
    setStatus("connecting", "connecting…");
    const socket = new WebSocket(FEED);
    socket.onopen = () => {
      retries = 0;
      setStatus("live", "live");
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") snapshot(data);
      else if (data.type === "update") update(data);
      scheduleRender();
    };
    socket.onclose = (event) => {
      const delay = RETRY_MS[Math.min(retries, RETRY_MS.length - 1)];
      retries += 1;
      const why = event.code === 1006 ? "connection lost" : `closed ${event.code} ${event.reason}`;
      setStatus("down", `${why.trim()}; reconnecting in ${delay / 1000} s`);
      setTimeout(connect, delay);
    };
  }

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  // The first message of a feed: everything as it is now. It replaces what the page had (after
  // a reconnection, the server's view is the one that counts).
  function snapshot(data) {
    view.routes = data.routes;
    view.files = data.files;
    view.connections = new Map();
    for (const row of data.connections) upsert(row);
    view.states = new Map(Object.entries(data.state));
    view.events = [];
    view.lastSeq = 0;
    view.notShown = data.omitted || 0;
    addEvents(data.events);
    view.lastSeq = data.last;
    fillRouteChoices();
    fillFileChoices();
    dirty.all = true;
  }

  function update(data) {
    if (data.events) addEvents(data.events);
    view.notShown += data.dropped || 0;
    if (data.last > view.lastSeq) view.lastSeq = data.last;
    for (const row of data.connections || []) {
      upsert(row);
      dirty.rows.add(row.id);
    }
    for (const id of data.removed || []) {
      view.connections.delete(id);
      dirty.rows.add(id);
    }
    for (const [file, value] of Object.entries(data.state || {})) {
      view.states.set(file, value);
      dirty.state = true;
      if (view.editing && view.editing.file === file &&
          JSON.stringify(value) !== view.editing.from) {
        $("state-stale").hidden = false;
      }
    }
    if (data.events) dirty.events = true;
  }

  function upsert(row) {
    view.connections.set(row.id, row);
    view.routeOf.set(row.id, row.route);
  }

  function addEvents(events) {
    for (const event of events) {
      // A new feed's first update may repeat events its snapshot had.
      if (event.seq <= view.lastSeq) continue;
      if (event.event === "connect") view.routeOf.set(event.connection, event.route);
      view.events.push(event);
    }
    if (view.events.length > MAX_EVENTS) view.events.splice(0, view.events.length - MAX_EVENTS);
    // Closed connections are remembered only while events of theirs are in the window: a page
    // left open for days must not keep every id it ever saw.
    if (view.routeOf.size > view.connections.size + 2 * MAX_EVENTS) {
      const kept = new Map();
      for (const row of view.connections.values()) kept.set(row.id, row.route);
      for (const event of view.events) {
        for (const id of connectionsOf(event)) {
          if (view.routeOf.has(id)) kept.set(id, view.routeOf.get(id));
        }
      }
      view.routeOf = kept;
    }
  }

  // ---- rendering ---------------------------------------------------------------------------
  // What changed since the last frame; the page renders at most once per animation frame,
  // however many updates arrive.
  const dirty = { all: true, rows: new Set(), events: false, state: false };
  let frame = 0;

  function scheduleRender() {
    if (!frame) frame = requestAnimationFrame(render);
  }

  function render() {
    frame = 0;
    const all = dirty.all;
    if (all || dirty.rows.size) renderConnections(all);
    if (all || dirty.events || dirty.rows.size) renderEvents();
    if (all || dirty.state) renderState();
    renderSummary();
    dirty.all = false;
    dirty.rows.clear();
    dirty.events = false;
    dirty.state = false;
  }

  // One block per route: its count, its rooms with theirs, and a table of its connections. Rows
  // are kept by id and rebuilt only when their connection changed.
  const rowElements = new Map();
  const routeBlocks = new Map();

  function routeBlock(path) {
    let block = routeBlocks.get(path);
    if (!block) {
      const tbody = el("tbody");
      const table = el("table", { className: "connections" },
        el("thead", {}, el("tr", {},
          ...["id", "ip", "since", "rooms", "protocol", "session", ""].map(
            (name) => el("th", { text: name, title: name === "protocol" ? "the subprotocol its handshake selected" : "" })))),
        tbody);
      const heading = el("h3", {}, el("code", { text: path }), el("span", { className: "count" }));
      const rooms = el("p", { className: "rooms" });
      const node = el("section", { className: "route", attrs: { "data-route": path } },
        heading, rooms, table);
      block = { node, tbody, table, count: heading.lastChild, rooms };
      routeBlocks.set(path, block);
    }
    return block;
  }

  function renderConnections(all) {
    const container = $("routes");
    if (all) {
      rowElements.clear();
      routeBlocks.clear();
      container.replaceChildren(...view.routes.map((route) => routeBlock(route.path).node));
      for (const row of view.connections.values()) placeRow(row);
    } else {
      for (const id of dirty.rows) {
        const old = rowElements.get(id);
        const row = view.connections.get(id);
        if (!row) {
          if (old) old.remove();
          rowElements.delete(id);
        } else if (old) {
          const fresh = rowElement(row);
          old.replaceWith(fresh);
          rowElements.set(id, fresh);
        } else {
          placeRow(row);
        }
      }
    }
    for (const route of view.routes) {
      const block = routeBlock(route.path);
      const rows = [...view.connections.values()].filter((row) => row.route === route.path);
      block.count.textContent = plural(rows.length, "connection");
      block.table.hidden = rows.length === 0;
      const rooms = roomCounts(rows);
      block.rooms.replaceChildren(
        ...(rooms.size ? [el("span", { text: "rooms:" })] : []),
        ...[...rooms].map(([name, count]) => el("span", { className: "room", text: `${name} (${count})` })),
      );
    }
    $("connection-count").textContent = number.format(view.connections.size);
    fillRoomChoices();
  }

  function roomCounts(rows) {
    const counts = new Map();
    for (const row of rows) for (const room of row.rooms) counts.set(room, (counts.get(room) || 0) + 1);
    return new Map([...counts].sort((a, b) => a[0].localeCompare(b[0])));
  }

  function placeRow(row) {
    const tr = rowElement(row);
    rowElements.set(row.id, tr);
    routeBlock(row.route).tbody.append(tr);
  }

  function rowElement(row) {
    const session = row.session === null
      ? `(${number.format(row.sessionSize)} characters: GET ${ADMIN}/connections/${row.id}/session)`
      : compact(row.session);
    const actions = el("td", { className: "row-actions" },
      el("button", { text: "filter", attrs: { type: "button", "data-action": "filter", "data-id": row.id } }),
      el("button", { text: "send", attrs: { type: "button", "data-action": "send", "data-id": row.id } }),
      el("button", { text: "close", attrs: { type: "button", "data-action": "close", "data-id": row.id } }));
    return el("tr", { attrs: { "data-id": row.id } },
      el("td", {}, el("code", { text: row.id })),
      el("td", { text: row.ip ?? "" }),
      el("td", { text: clock(row.connectedAt, true), title: row.connectedAt }),
      el("td", { className: "rooms-cell", text: row.rooms.join(", ") }),
      el("td", { text: row.subprotocol ?? "" }),
      el("td", { className: "session", text: session }),
      actions);
  }

  // The stream: newest first, filtered. An event's element is made once and kept while the
  // event is in the window, so that re-filtering moves nodes instead of building them.
  const eventElements = new WeakMap();

  function renderEvents() {
    const test = currentFilter();
    const shown = [];
    for (let i = view.events.length - 1; i >= 0; i--) {
      const event = view.events[i];
      if (test(event)) shown.push(elementOf(event));
    }
    $("events").replaceChildren(...shown);
    $("no-events").hidden = shown.length > 0;
    $("event-count").textContent = shown.length === view.events.length
      ? number.format(view.events.length)
      : `${number.format(shown.length)} of ${number.format(view.events.length)}`;
    const behind = $("behind");
    behind.hidden = view.notShown === 0;
    behind.textContent = `${number.format(view.notShown)} events not shown`;
    behind.title = "Events the server left out of the feed to keep up (it sends the newest " +
      "hundred or so ten times a second at most), or that the journal no longer held. " +
      `The page keeps the latest ${MAX_EVENTS}; ${ADMIN}/journal has what the journal keeps.`;
  }

  function connectionsOf(event) {
    if (event.connection) return [event.connection];
    return event.connections || [];
  }

  function payloadText(event) {
    if (event.text !== undefined) return event.text;
    if (event.binary !== undefined) return `binary (base64) ${event.binary}`;
    return "";
  }

  function summaryOf(event) {
    const ids = connectionsOf(event);
    switch (event.event) {
      case "in":
      case "unmatched":
        return payloadText(event);
      case "out": {
        const count = event.recipients ?? ids.length;
        const to = count <= 3 ? ids.join(", ") : `${number.format(count)} connections`;
        return `→ ${to}: ${payloadText(event)}`;
      }
      case "connect": {
        const query = new URLSearchParams(event.query).toString();
        return `${event.path}${query ? "?" + query : ""}`;
      }
      case "close":
        return `${event.code}${event.reason ? " " + event.reason : ""}`;
      case "reject":
        return `${event.path}: ${event.status !== undefined ? "HTTP " + event.status : "close " + event.code} ${event.reason}`;
      case "error":
        return `${event.location}: ${event.message}`;
      default:
        return "";
    }
  }

  function elementOf(event) {
    let node = eventElements.get(event);
    if (node) return node;
    const who = event.connection ? el("code", { className: "who", text: event.connection }) : null;
    let preview = summaryOf(event);
    if (preview.length > PREVIEW) preview = preview.slice(0, PREVIEW) + "…";
    const summary = el("summary", {},
      el("time", { text: clock(event.time), title: event.time }),
      el("span", { className: `kind kind-${event.event}`, text: event.event }),
      who,
      el("span", { className: "preview", text: preview }));
    const details = el("details", {}, summary);
    // What an event shows when opened is built when it is first opened: most never are, and a
    // fast stream makes a hundred events ten times a second.
    details.addEventListener("toggle", () => {
      if (details.open && details.childElementCount === 1) details.append(detailsOf(event));
    });
    node = el("li", { className: `event event-${event.event}`, attrs: { "data-seq": String(event.seq) } }, details);
    eventElements.set(event, node);
    return node;
  }

  function detailsOf(event) {
    const body = el("div", { className: "detail" });
    const line = (label, value) => body.append(el("p", {}, el("b", { text: `${label} ` }), el("span", { text: value })));
    if (event.event === "error") {
      line("at", event.location);
      line("error", event.message);
    }
    if (event.event === "out") {
      const ids = event.connections || [];
      const more = event.recipients && event.recipients > ids.length
        ? ` … and ${number.format(event.recipients - ids.length)} more` : "";
      line("to", ids.join(", ") + more);
    }
    if (event.route) line("route", event.route);
    if (event.truncated) {
      const kept = (event.text ?? event.binary).length;
      line("cut", `the first ${number.format(kept)} of ${number.format(event.truncated)} characters`);
    }
    if (event.text !== undefined) body.append(el("pre", { className: "json", text: event.truncated ? event.text : pretty(event.text) }));
    if (event.binary !== undefined) body.append(el("pre", { className: "json", text: `binary, base64:\n${event.binary}` }));
    if (event.event === "connect") {
      body.append(el("pre", { className: "json", text: JSON.stringify({ query: event.query, headers: event.headers }, null, 2) }));
    }
    return body;
  }

  // ---- filters -----------------------------------------------------------------------------
  function currentFilter() {
    const route = $("filter-route").value;
    const room = $("filter-room").value;
    const connection = $("filter-connection").value.trim();
    const text = $("filter-text").value.trim().toLowerCase();
    const kinds = new Set([...$("filter-kinds").querySelectorAll("input:checked")].map((box) => box.value));
    // A room filter keeps the events of the connections in the room now (the journal does
    // not say who was in which room when).
    let members = null;
    if (room) {
      const [roomRoute, roomName] = JSON.parse(room);
      members = new Set([...view.connections.values()]
        .filter((row) => row.route === roomRoute && row.rooms.includes(roomName))
        .map((row) => row.id));
    }
    return (event) => {
      if (!kinds.has(event.event)) return false;
      const ids = connectionsOf(event);
      if (route) {
        const of = event.route ?? (ids.length ? view.routeOf.get(ids[0]) : undefined);
        if (of !== route) return false;
      }
      if (connection && !ids.some((id) => id.startsWith(connection))) return false;
      if (members && !ids.some((id) => members.has(id))) return false;
      if (text && !searchable(event).includes(text)) return false;
      return true;
    };
  }

  function searchable(event) {
    return [event.text, event.reason, event.message, event.location, event.path]
      .filter((part) => typeof part === "string").join("\n").toLowerCase();
  }

  function fillRouteChoices() {
    for (const select of [$("filter-route"), $("send-route")]) {
      const chosen = select.value;
      const options = view.routes.map((route) => el("option", { text: route.path, attrs: { value: route.path } }));
      if (select.id === "filter-route") options.unshift(el("option", { text: "all", attrs: { value: "" } }));
      select.replaceChildren(...options);
      if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
    }
  }

  function fillRoomChoices() {
    const select = $("filter-room");
    const chosen = select.value;
    const seen = new Map();
    for (const row of view.connections.values()) {
      for (const room of row.rooms) {
        const key = JSON.stringify([row.route, room]);
        seen.set(key, view.routes.length > 1 ? `${room} (${row.route})` : room);
      }
    }
    if (chosen && !seen.has(chosen)) {
      const [roomRoute, roomName] = JSON.parse(chosen);
      seen.set(chosen, `${roomName} (${roomRoute}, empty)`);
    }
    const options = [...seen].sort((a, b) => a[1].localeCompare(b[1]))
      .map(([key, label]) => el("option", { text: label, attrs: { value: key } }));
    select.replaceChildren(el("option", { text: "all", attrs: { value: "" } }), ...options);
    select.value = chosen;
  }

  function fillFileChoices() {
    const select = $("state-file");
    const chosen = select.value;
    // Files with a state first: those are the ones worth looking at.
    const files = [...view.files].sort((a, b) => hasState(b) - hasState(a));
    select.replaceChildren(...files.map((file) => el("option", { text: file, attrs: { value: file } })));
    if (files.includes(chosen)) select.value = chosen;
  }

  function hasState(file) {
    const value = view.states.get(file);
    return value === null || (value && Object.keys(value).length > 0) ? 1 : 0;
  }

  // ---- state -------------------------------------------------------------------------------
  function renderState() {
    const file = $("state-file").value;
    const value = view.states.get(file);
    $("state-view").textContent = value === null
      ? `(too large to show live: GET ${ADMIN}/state?file=${file})`
      : JSON.stringify(value ?? {}, null, 2);
  }

  function renderSummary() {
    const rooms = new Set();
    for (const row of view.connections.values()) for (const room of row.rooms) rooms.add(`${row.route}\n${room}`);
    $("summary").textContent = `${plural(view.connections.size, "connection")}, ` +
      `${plural(rooms.size, "room")}, ${plural(view.routes.length, "route")}; ` +
      `event #${number.format(view.lastSeq)}`;
  }

  // ---- actions (through the admin API) -----------------------------------------------------
  // A request to the admin API; its JSON answer, or an Error with the API's own message.
  async function admin(method, path, body) {
    // Every change says it is JSON, with a body or without: the admin API refuses a write
    // without that header, the one thing a page of another site cannot send.
    const init = { method, headers: method === "GET" ? {} : { "Content-Type": "application/json" } };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    const response = await fetch(ADMIN + path, init);
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok) throw new Error((answer && answer.error) || `${response.status} ${response.statusText}`);
    return answer;
  }

  function report(output, promise, success) {
    output.className = "result";
    output.textContent = "…";
    promise.then(
      (answer) => {
        output.classList.add("ok");
        output.textContent = success(answer);
      },
      (error) => {
        output.classList.add("failed");
        output.textContent = error.message;
      },
    );
  }

  function showSendFields() {
    const target = $("send-target").value;
    for (const label of $("send-form").querySelectorAll("label[data-for]")) {
      const shown = label.dataset.for.split(" ").includes(target);
      label.hidden = !shown;
      for (const input of label.querySelectorAll("input")) input.required = shown;
    }
  }

  function send(event) {
    event.preventDefault();
    const target = $("send-target").value;
    const raw = $("send-message").value;
    const body = {};
    if ($("send-json").checked) {
      try {
        body.message = JSON.parse(raw);
      } catch (error) {
        $("send-result").className = "result failed";
        $("send-result").textContent = `not JSON: ${error.message} (untick "as JSON" to send it as text)`;
        return;
      }
    } else {
      body.message = raw;
    }
    if (target === "connection") body.connection = $("send-connection").value.trim();
    if (target === "room" || target === "route") body.route = $("send-route").value;
    if (target === "room") body.room = $("send-room").value;
    report($("send-result"), admin("POST", "/send", body),
      (answer) => `delivered to ${plural(answer.delivered, "connection")}`);
  }

  function closeConnection(event) {
    event.preventDefault();
    const id = $("close-connection").value.trim();
    const query = new URLSearchParams({ code: $("close-code").value, reason: $("close-reason").value });
    report($("close-result"), admin("DELETE", `/connections/${encodeURIComponent(id)}?${query}`),
      (answer) => `closed ${answer.closed}: ${answer.code} ${answer.reason}`);
  }

  async function startEditing() {
    const file = $("state-file").value;
    try {
      const answer = await admin("GET", `/state?file=${encodeURIComponent(file)}`);
      view.editing = { file, from: JSON.stringify(answer.state) };
      $("state-editor").value = JSON.stringify(answer.state, null, 2);
      $("state-stale").hidden = true;
      $("state-form").hidden = false;
      $("state-edit").hidden = true;
      $("state-result").textContent = "";
      $("state-editor").focus();
    } catch (error) {
      $("state-result").className = "result failed";
      $("state-result").textContent = error.message;
    }
  }

  function stopEditing() {
    view.editing = null;
    $("state-form").hidden = true;
    $("state-edit").hidden = false;
  }

  function saveState(event) {
    event.preventDefault();
    const file = view.editing ? view.editing.file : $("state-file").value;
    const text = $("state-editor").value;
    try {
      JSON.parse(text);
    } catch (error) {
      $("state-result").className = "result failed";
      $("state-result").textContent = `not JSON: ${error.message}`;
      return;
    }
    const saving = admin("PUT", `/state?file=${encodeURIComponent(file)}`, text);
    report($("state-result"), saving, () => `saved the state of ${file}`);
    saving.then((answer) => {
      // The answer is the new state: shown now, not at the feed's next look at the state.
      view.states.set(file, answer.state);
      dirty.state = true;
      scheduleRender();
      stopEditing();
    }, () => {});
  }

  function reset() {
    if (!confirm("Close every connection (1012), empty the rooms, restore the state and clear the journal?")) return;
    admin("POST", "/reset").then(
      (answer) => setStatus("live", `reset: ${answer.closed} connections closed`),
      (error) => setStatus("live", `reset failed: ${error.message}`),
    );
  }

  // The buttons of a connection's row: one listener for the whole table.
  function rowAction(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.dataset.id;
    if (button.dataset.action === "filter") {
      $("filter-connection").value = id;
      dirty.events = true;
      scheduleRender();
    } else if (button.dataset.action === "send") {
      $("send-target").value = "connection";
      showSendFields();
      $("send-connection").value = id;
      $("send-message").focus();
    } else if (button.dataset.action === "close") {
      $("close-connection").value = id;
      $("close-code").focus();
    }
  }

  function refilter() {
    dirty.events = true;
    scheduleRender();
  }

  function start() {
    $("routes").addEventListener("click", rowAction);
    $("filters").addEventListener("input", refilter);
    $("filters").addEventListener("change", refilter);
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    $("filter-clear").addEventListener("click", () => {
      $("filters").reset();
      refilter();
    });
    $("send-target").addEventListener("change", showSendFields);
    $("send-form").addEventListener("submit", send);
    $("close-form").addEventListener("submit", closeConnection);
    $("state-file").addEventListener("change", () => {
      stopEditing();
      renderState();
    });
    $("state-edit").addEventListener("click", startEditing);
    $("state-form").addEventListener("submit", saveState);
    $("state-cancel").addEventListener("click", stopEditing);
    $("reset").addEventListener("click", reset);
    showSendFields();
    connect();
  }

  start();
})();
