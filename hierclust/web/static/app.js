// hierclust web view: draws /api/state, follows /ws, replays the last failure's spread.
// No build step and no library: the DOM is built with textContent only (names never become HTML).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const COUNTED = ["failed", "suspect", "unreachable", "left", "maintenance", "drained"];
const OPS = ["kill", "restart", "drain", "maintenance", "resume", "partition", "heal"];
const view = {
  state: null, spread: null, openTiers: {}, replayTimer: null, lastVictim: null,
  marks: { learned: {}, via: new Set() },  // the replay so far: survives a redraw of the tree
  freshEvents: false,
};

function withToken(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function groupCard(g) {
  const badges = el("div", { class: "badges" });
  for (const key of COUNTED) {
    if (g.counts[key] > 0) {
      badges.append(el("span", { class: "badge b-" + key, "data-count": key }, `${g.counts[key]} ${key}`));
    }
  }
  let lead;
  if (g.led) lead = `leader ${g.leader}`;
  else if (g.leader) lead = `no leader (${g.leader} ${g.leader_state})`;
  else lead = "no leader";
  const attrs = {
    class: "group", "data-group": g.name, "data-tier": g.tier, "data-quorate": g.quorate,
    "data-cut": g.cut_off, "data-led": g.led, title: g.hostlist || g.name,
  };
  for (const key of COUNTED) attrs["data-" + key] = g.counts[key];
  return el("div", attrs,
    el("div", { class: "name" }, g.name),
    el("div", { class: "lead" }, `${lead}, term ${g.term}`),
    el("div", { class: "lead" },
      `${g.quorate ? "quorate" : "no quorum"} ${g.votes_present}/${g.votes} (needs ${g.quorum})` +
      (g.cut_off ? ", cut off" : "")),
    badges, el("div", { class: "fill" }));
}

function renderState(state) {
  view.state = state;
  const conn = document.getElementById("conn");
  const problems = document.getElementById("problems");
  problems.textContent = (state.errors || []).join("; ");
  if (state.down) {
    conn.dataset.state = "down";
    conn.textContent = "no worker answers";
    return;
  }
  conn.dataset.state = "live";
  conn.textContent = "live";
  document.getElementById("cluster").textContent = state.cluster;
  document.title = `hierclust: ${state.cluster}`;
  const t = state.totals;
  const totals = document.getElementById("totals");
  totals.replaceChildren(
    el("span", { class: "s-alive" }, `${t.alive}/${t.nodes} alive`),
    ...["failed", "suspect", "unreachable", "left"].map(
      (k) => el("span", { class: "s-" + k, id: "total-" + k }, `${t[k]} ${k}`)),
    el("span", {}, `${t.maintenance} maintenance, ${t.drained} drained`),
    el("span", {}, `${t.groups_led}/${t.groups} led, ${t.groups_quorate} quorate`),
    el("span", { class: t.primary ? "s-alive" : "s-failed" },
      t.primary ? "primary component" : "no primary component"));
  const tree = document.getElementById("tree");
  const tiers = state.tiers.map((tier) => {
    const key = String(tier.tier);
    if (!(key in view.openTiers)) view.openTiers[key] = tier.groups <= 64;
    const details = el("details", { class: "tier", "data-tier": tier.tier });
    details.open = view.openTiers[key];
    details.addEventListener("toggle", () => { view.openTiers[key] = details.open; });
    const hidden = tier.groups - tier.shown.length;
    const bad = tier.shown.filter((g) => g.trouble).length;
    details.append(
      el("summary", {}, `tier ${tier.tier}: ${tier.groups} group${tier.groups === 1 ? "" : "s"}` +
        (bad ? `, ${bad} in trouble` : "") + (hidden > 0 ? ` (${hidden} not listed)` : "")),
      el("div", { class: "groups" }, ...tier.shown.map(groupCard)));
    return details;
  });
  tree.replaceChildren(...tiers);
  document.getElementById("admin").hidden = !state.admin;
  markHits();
  applyMarks();
}

// Group name -> its parent and size (nodes in its subtree), from the last state.
function groupIndex() {
  const index = {};
  for (const tier of (view.state && view.state.tiers) || []) {
    for (const g of tier.shown) index[g.name] = { parent: g.parent, nodes: g.nodes };
  }
  return index;
}

// Draw the replay's progress on the cards: how much of each subtree learned it so far, and
// the groups it travelled through.
function applyMarks() {
  const index = groupIndex();
  for (const card of document.querySelectorAll(".group")) {
    const name = card.dataset.group;
    const learned = view.marks.learned[name] || 0;
    card.classList.toggle("learning", learned > 0);
    card.classList.toggle("via", view.marks.via.has(name));
    const size = (index[name] && index[name].nodes) || 1;
    card.querySelector(".fill").style.width = `${Math.min(100, (100 * learned) / size)}%`;
  }
}

function markHits() {
  const hits = new Set((view.hits || []).map((row) => row.group));
  for (const card of document.querySelectorAll(".group")) {
    card.classList.toggle("hit", hits.has(card.dataset.group));
  }
}

async function getJSON(path, options) {
  const response = await fetch(withToken(path), options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function doSearch(event) {
  event.preventDefault();
  const query = document.getElementById("search").value;
  const errorBox = document.getElementById("search-error");
  const results = document.getElementById("results");
  errorBox.textContent = "";
  try {
    const body = await getJSON("/api/search?q=" + encodeURIComponent(query));
    view.hits = body.nodes;
    const rows = body.nodes.map((row) => el("tr", { "data-node": row.node, "data-state": row.state },
      el("td", {}, row.node), el("td", { class: "s-" + row.state }, row.state),
      el("td", {}, row.mode), el("td", {}, row.group), el("td", {}, row.leads.join(", "))));
    results.replaceChildren(el("table", { id: "results-table" },
      el("tr", {}, ...["node", "state", "mode", "group", "leads"].map((h) => el("th", {}, h))),
      ...rows));
  } catch (err) {
    view.hits = [];
    results.replaceChildren();
    errorBox.textContent = err.message;
  }
  markHits();
}

function renderSpread(spread) {
  view.spread = spread;
  const button = document.getElementById("replay-button");
  const title = document.getElementById("replay-title");
  if (!spread) return;
  button.disabled = false;
  title.textContent = `${spread.victim} (incarnation ${spread.incarnation}) ${spread.kind}: ` +
    `detected by ${spread.detected_by || "?"} at +${spread.detect_ms} ms after the ${spread.origin}; ` +
    `${spread.notified} of ${spread.nodes} nodes learned it`;
  const key = `${spread.victim}/${spread.incarnation}`;
  if (key !== view.lastVictim) {
    view.lastVictim = key;
    setTimeout(replay, 1500);  // let the notice finish spreading, then play it
  }
}

function replay() {
  const spread = view.spread;
  if (!spread) return;
  clearInterval(view.replayTimer);
  const speed = Number(document.getElementById("replay-speed").value) || 1;
  const log = document.getElementById("replay-log");
  const clock = document.getElementById("replay-clock");
  log.replaceChildren();
  view.marks = { learned: {}, via: new Set() };
  applyMarks();
  const index = groupIndex();
  const rows = spread.learned.slice();
  // the clock starts at the first learning (the detection): nothing moves before it
  const first = rows.length ? rows[0].ms : 0;
  const start = performance.now();
  let next = 0;
  const step = () => {
    const now = first + (performance.now() - start) * speed;
    clock.textContent = `+${Math.round(now)} ms`;
    const before = next;
    while (next < rows.length && rows[next].ms <= now) {
      const row = rows[next++];
      // the node's leaf group and every group above it count one more node that knows
      for (let g = row.group; g; g = index[g] && index[g].parent) {
        view.marks.learned[g] = (view.marks.learned[g] || 0) + 1;
      }
      if (row.via) view.marks.via.add(row.via);
      const how = row.via ? `via ${row.via} (tier ${row.via_tier})` : "detected it";
      log.append(el("div", { "data-node": row.node }, `+${row.ms.toFixed(1)} ms  ${row.node}  ${how}`));
      log.scrollTop = log.scrollHeight;
    }
    if (next > before) applyMarks();
    if (next >= rows.length) {
      clearInterval(view.replayTimer);
      clock.textContent = `+${rows.length ? rows[rows.length - 1].ms.toFixed(1) : 0} ms: ` +
        `${rows.length} nodes`;
    }
  };
  view.replayTimer = setInterval(step, 16);
  step();
}

function renderEvents(lines) {
  const box = document.getElementById("events");
  if (view.freshEvents) box.replaceChildren();  // a new connection sends the recent ones again
  view.freshEvents = false;
  for (const line of lines) {
    const when = line.wall_ms ? new Date(line.wall_ms).toISOString().slice(11, 23) : "";
    box.append(el("div", {}, `${when} ${line.node || "-"} ${line.event} ${line.text}`));
  }
  while (box.childNodes.length > 200) box.firstChild.remove();
  box.scrollTop = box.scrollHeight;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${withToken("/ws")}`);
  view.freshEvents = true;
  ws.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "state") renderState(data.state);
    else if (data.type === "spread") renderSpread(data.spread);
    else if (data.type === "events") renderEvents(data.events);
  };
  ws.onclose = () => {
    const conn = document.getElementById("conn");
    conn.dataset.state = "down";
    conn.textContent = "disconnected: retrying";
    setTimeout(connect, 1000);
  };
}

async function command(op) {
  const target = document.getElementById("admin-target").value;
  const out = document.getElementById("admin-result");
  try {
    const body = await getJSON("/api/admin", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ op, target }),
    });
    out.textContent = `${op} ${target}: done`;
    return body;
  } catch (err) {
    out.textContent = `${op} ${target}: ${err.message}`;
    return null;
  }
}

function setup() {
  document.getElementById("search-form").addEventListener("submit", doSearch);
  document.getElementById("replay-button").addEventListener("click", replay);
  document.getElementById("admin-form").addEventListener("submit", (e) => e.preventDefault());
  const buttons = document.getElementById("admin-buttons");
  for (const op of OPS) {
    const button = el("button", { "data-op": op }, op);
    button.addEventListener("click", () => command(op));
    buttons.append(button);
  }
  connect();
}

window.hierclust = { view, replay, command };
setup();
