// The call pages of oneinbox-edge: a list of recent calls and the ladder of one call, drawn from the API
// (`GET /v1/calls`, `/v1/calls/{id}`, `/v1/calls/{id}/trace`). The API key comes from the URL fragment
// (`#key=...`), which browsers never send to the server, or from the form. SIP messages come from
// strangers: they are only ever put in the page as text (textContent), never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function keyFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return params.get("key");
}

let apiKey = keyFromFragment();

function setStatus(text) {
  $("status").textContent = text;
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + apiKey } });
  if (res.status === 401) {
    apiKey = null;
    askForKey("That API key was refused.");
    throw new Error("unauthorized");
  }
  if (!res.ok) {
    let detail = res.status + " " + res.statusText;
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) detail = body.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(path + ": " + detail);
  }
  return res.json();
}

function askForKey(why) {
  $("key-form").hidden = false;
  setStatus(why || "Enter an API key to see this account's calls.");
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function withKey(href) {
  return href + "#key=" + encodeURIComponent(apiKey);
}

// ---- the list of calls -------------------------------------------------------------------------------

async function showCalls() {
  $("where").textContent = "recent calls";
  setStatus("Loading calls...");
  const page = await api("/v1/calls?limit=100");
  const section = $("calls");
  section.replaceChildren();
  const table = el("table", { class: "calls" });
  const head = el("tr");
  for (const h of ["call", "created", "direction", "from", "to", "status", "answered by", "end reason"]) {
    head.appendChild(el("th", {}, h));
  }
  table.appendChild(head);
  for (const c of page.data || []) {
    const row = el("tr", { class: "call-row" });
    const link = el("a", { href: withKey("/ui/calls/" + encodeURIComponent(c.id)) }, c.id);
    const first = el("td");
    first.appendChild(link);
    row.appendChild(first);
    row.appendChild(el("td", {}, c.created_at || ""));
    row.appendChild(el("td", {}, c.direction || ""));
    row.appendChild(el("td", {}, c.from || ""));
    row.appendChild(el("td", {}, c.to || ""));
    row.appendChild(el("td", { class: c.status || "" }, c.status || ""));
    row.appendChild(el("td", {}, c.answered_by || ""));
    row.appendChild(el("td", {}, c.end_reason || ""));
    table.appendChild(row);
  }
  section.appendChild(table);
  section.hidden = false;
  setStatus((page.data || []).length + " calls" + (page.has_more ? " (the most recent 100)" : ""));
}

// ---- one call's ladder -------------------------------------------------------------------------------

/** The fields of one trace message, whatever their spelling in the trace. */
function normalise(m) {
  const dir = String(m.direction || m.dir || "").toLowerCase();
  const inbound = dir === "in" || dir === "received" || dir === "recv" || dir === "rx";
  let headers = m.headers;
  if (Array.isArray(headers)) {
    headers = headers.map((h) => (Array.isArray(h) ? h[0] + ": " + h[1] : typeof h === "object" ? h.name + ": " + h.value : String(h))).join("\n");
  }
  const startLine = m.start_line || (m.raw ? String(m.raw).split("\r\n")[0] : "");
  return {
    t: Number(m.t_us !== undefined ? m.t_us : m.time_us || 0),
    leg: m.leg ? String(m.leg) : "",
    inbound,
    peer: String(m.peer || ""),
    transport: String(m.transport || ""),
    startLine: String(startLine),
    headers: headers ? String(headers) : "",
    body: m.body ? String(m.body) : "",
    raw: m.raw ? String(m.raw) : null,
  };
}

/** What an arrow says: the method of a request, the code and reason of a response. */
function label(startLine) {
  const parts = startLine.split(" ");
  if (parts[0].startsWith("SIP/")) return { text: parts.slice(1).join(" "), response: true, code: Number(parts[1]) };
  return { text: parts[0], response: false, code: 0 };
}

/** The party on the far side of a message: the leg's name when the trace has one, else the peer. */
function partyOf(m) {
  return m.leg || m.peer || "peer";
}

function since(t, t0) {
  const ms = (t - t0) / 1000;
  return ms < 1000 ? "+" + ms.toFixed(1) + " ms" : "+" + (ms / 1000).toFixed(3) + " s";
}

function fullText(m) {
  if (m.raw) return m.raw;
  return m.startLine + "\n" + m.headers + (m.body ? "\n\n" + m.body : "");
}

function drawLadder(messages) {
  const msgs = messages.map(normalise).sort((a, b) => a.t - b.t);
  // Columns: the party of the first message on the left of the edge (the carrier of an inbound call, the
  // agent of an outbound one), every other party on the right in the order they first appear.
  const parties = [];
  const peerOf = new Map();
  for (const m of msgs) {
    const p = partyOf(m);
    if (!parties.includes(p)) parties.push(p);
    if (!peerOf.has(p) && m.peer) peerOf.set(p, m.peer + (m.transport ? " " + m.transport : ""));
  }
  const columns = parties.length ? [parties[0], "edge", ...parties.slice(1)] : ["edge"];
  const colW = 250, top = 70, rowH = 34, left = 110;
  const width = left + colW * (columns.length - 1) + 110;
  const height = top + rowH * (msgs.length + 1);
  const x = (name) => left + colW * columns.indexOf(name);
  const root = svg("svg", { class: "ladder", width, height, viewBox: `0 0 ${width} ${height}` });
  for (const name of columns) {
    const g = svg("g", { class: "party", "data-party": name });
    // A leg's name (`agent agt_… (fallback)`) in two lines, what it is over its id, so columns do not overlap.
    const words = name.split(" ");
    const id = words.find((w) => /^[a-z]+_[A-Za-z0-9]{6,}$/.test(w));
    const lines = id ? [words.filter((w) => w !== id).join(" "), id] : [name];
    if (peerOf.has(name)) lines.push(peerOf.get(name));
    lines.forEach((line, n) => {
      g.appendChild(svg("text", { x: x(name), y: 16 + 15 * n, "text-anchor": "middle", class: n ? "peer" : "" }, line));
    });
    g.appendChild(svg("line", { class: "lifeline", x1: x(name), y1: 58, x2: x(name), y2: height - 8 }));
    root.appendChild(g);
  }
  const t0 = msgs.length ? msgs[0].t : 0;
  msgs.forEach((m, i) => {
    const y = top + rowH * (i + 1);
    const party = partyOf(m);
    const [from, to] = m.inbound ? [party, "edge"] : ["edge", party];
    const x1 = x(from), x2 = x(to);
    const what = label(m.startLine);
    const cls = "arrow" + (what.response ? " response" : "") + (what.code >= 400 ? " error" : "");
    const g = svg("g", { class: cls, "data-index": i, tabindex: 0 });
    g.appendChild(svg("line", { class: "hit", x1, y1: y, x2, y2: y }));
    g.appendChild(svg("line", { x1, y1: y, x2, y2: y, "marker-end": "url(#head)" }));
    const mid = (x1 + x2) / 2;
    g.appendChild(svg("text", { x: mid, y: y - 5, "text-anchor": "middle", class: "what" }, what.text));
    g.appendChild(svg("text", { x: 8, y: y + 4, class: "time" }, since(m.t, t0)));
    const show = () => {
      for (const s of root.querySelectorAll(".arrow.selected")) s.classList.remove("selected");
      g.classList.add("selected");
      const pre = $("message");
      pre.textContent = (m.inbound ? "received from " : "sent to ") + m.peer + " " + m.transport + "\n\n" + fullText(m);
      pre.hidden = false;
    };
    g.addEventListener("click", show);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") show(); });
    root.appendChild(g);
  });
  const defs = svg("defs");
  const marker = svg("marker", { id: "head", markerWidth: 10, markerHeight: 8, refX: 9, refY: 4, orient: "auto" });
  marker.appendChild(svg("path", { d: "M0,0 L10,4 L0,8 z", fill: "#2456c9" }));
  defs.appendChild(marker);
  root.insertBefore(defs, root.firstChild);
  return root;
}

function drawSummary(call, trace) {
  const box = $("summary");
  box.replaceChildren();
  box.appendChild(el("h1", {}, call.id + " " + (call.direction || "") + " " + (call.from || "") + " \u2192 " + (call.to || "")));
  const outcome = el("p", { class: "outcome" },
    (call.status || "") + (call.end_reason ? ": " + call.end_reason : "") + (call.sip_status ? " (SIP " + call.sip_status + ")" : ""));
  box.appendChild(outcome);
  const hops = el("ol", { class: "hops" });
  for (const h of call.hops || []) {
    const who = h.agent_id || h.target || "";
    hops.appendChild(el("li", { class: "hop" },
      h.route + (who ? " " + who : "") + ": " + h.outcome + (h.sip_status ? " (" + h.sip_status + ")" : "")));
  }
  box.appendChild(hops);
  if (trace.truncated) {
    const n = trace.omitted_messages || 0, bytes = trace.omitted_bytes || 0;
    box.appendChild(el("p", { class: "cut" },
      "This trace was cut by the edge's trace limits: " + n + " messages (" + bytes + " bytes) are left out."));
  }
}

async function showCall(id) {
  $("where").textContent = id;
  setStatus("Loading " + id + "...");
  const [call, trace] = await Promise.all([
    api("/v1/calls/" + encodeURIComponent(id)),
    api("/v1/calls/" + encodeURIComponent(id) + "/trace"),
  ]);
  const messages = trace.messages || [];
  drawSummary(call, trace);
  $("ladder-wrap").replaceChildren(drawLadder(messages));
  $("call").hidden = false;
  setStatus(messages.length + " SIP messages");
  document.body.dataset.ready = "true";
}

async function main() {
  $("home").href = apiKey ? withKey("/ui/calls") : "/ui/calls";
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey = $("key-input").value.trim();
    if (!apiKey) return;
    // The key lives in the fragment from now on, so links and reloads keep it without the server seeing it.
    history.replaceState(null, "", location.pathname + "#key=" + encodeURIComponent(apiKey));
    $("key-form").hidden = true;
    route();
  });
  route();
}

function route() {
  if (!apiKey) {
    askForKey();
    return;
  }
  const m = location.pathname.match(/^\/ui\/calls\/([A-Za-z0-9_-]+)$/);
  const work = m ? showCall(m[1]) : showCalls();
  work.catch((e) => {
    if (e.message !== "unauthorized") setStatus("Could not load: " + e.message);
    document.body.dataset.ready = "error";
  });
  if (!m) work.then(() => { document.body.dataset.ready = "true"; });
}

main();
