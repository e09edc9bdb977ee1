// Damselfly supernode dashboard: polls the authenticated JSON API and
// renders it. Plain DOM, no dependencies; data is only ever set as text.
'use strict';

(function () {
  const TOKEN_KEY = 'damselfly.dashboard.token';
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.max(250, Number(params.get('refresh')) || 1000);

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let timer = null;
  let selectedTask = null; // task ID whose piece map is open
  let signedOut = false;

  class AuthError extends Error {}

  async function api(path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const r = await fetch(path, { headers, cache: 'no-store' });
    if (r.status === 401) throw new AuthError('unauthorized');
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { const e = await r.json(); if (e.message) msg = e.message; } catch (_) { /* not JSON */ }
      throw new Error(path + ': ' + msg);
    }
    return r.json();
  }

  // ---- formatting ----
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function bytes(n) {
    if (!(n > 0)) return '0 B';
    let i = 0;
    while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + UNITS[i];
  }
  const rate = (n) => bytes(n) + '/s';
  const pct = (f) => (100 * f).toFixed(0) + ' %';
  const saved = (v) => (v === null || v === undefined) ? '–' : v.toFixed(1) + ' %';

  // ---- DOM helpers ----
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(e, text) { if (e.textContent !== text) e.textContent = text; }

  // keyed renders rows of tbody from items: one row per key, cells made
  // once by make(row) and refreshed by update(row, item). Rows persist, so
  // keyboard focus survives a refresh.
  function keyed(table, items, key, make, update, emptyId) {
    const body = table.tBodies[0];
    const old = new Map();
    for (const tr of Array.from(body.rows)) old.set(tr.dataset.key, tr);
    let prev = null;
    for (const it of items) {
      const k = key(it);
      let tr = old.get(k);
      if (tr) old.delete(k); else { tr = el('tr'); tr.dataset.key = k; make(tr, it); }
      update(tr, it);
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of old.values()) tr.remove();
    $(emptyId).hidden = items.length > 0;
  }

  function spark(container, values, label) {
    const NS = 'http://www.w3.org/2000/svg';
    let svg = container.querySelector('svg');
    if (!svg) {
      svg = document.createElementNS(NS, 'svg');
      svg.setAttribute('viewBox', '0 0 120 24');
      svg.setAttribute('preserveAspectRatio', 'none');
      svg.setAttribute('role', 'img');
      svg.appendChild(document.createElementNS(NS, 'title'));
      svg.appendChild(document.createElementNS(NS, 'polyline'));
      container.appendChild(svg);
    }
    // The newest sample sits at the right; the x scale covers at least
    // 30 samples so that a young series does not stretch.
    const vs = (values || []).slice(-120);
    const top = Math.max(1, ...vs);
    const span = Math.max(vs.length, 30) - 1;
    const pts = vs.map((v, i) => (120 * (span - (vs.length - 1 - i)) / span).toFixed(1) + ',' +
      (23 - 22 * v / top).toFixed(1)).join(' ');
    svg.querySelector('polyline').setAttribute('points', pts);
    setText(svg.querySelector('title'), label);
    svg.setAttribute('aria-label', label);
  }

  function progressCell(td, fraction, label) {
    let p = td.querySelector('progress');
    if (!p) {
      p = el('progress', { max: '100' });
      td.appendChild(p);
      td.appendChild(el('span', { class: 'pct' }));
    }
    const v = Math.round(1000 * fraction) / 10;
    p.value = v;
    p.setAttribute('aria-label', label);
    setText(td.querySelector('.pct'), v.toFixed(0) + ' %');
  }

  // ---- rendering ----
  function merge(doc) {
    const tasks = [], peers = [], preheats = [];
    for (const n of doc.nodes || []) {
      for (const t of n.tasks || []) tasks.push(Object.assign({ node: n.supernode }, t));
      for (const p of n.peers || []) peers.push(Object.assign({ node: n.supernode }, p));
      for (const p of n.preheats || []) preheats.push(Object.assign({ node: n.supernode }, p));
    }
    return { tasks, peers, preheats };
  }

  function renderTotals(doc) {
    const t = doc.totals;
    setText($('total-active'), t.activeTasks + ' of ' + t.tasks);
    setText($('total-peers'), t.peers + (t.isolatedPeers ? ' (' + t.isolatedPeers + ' isolated)' : ''));
    setText($('total-peer-bytes'), bytes(t.bytesFromPeers));
    setText($('total-seed-bytes'), bytes(t.bytesFromSeed));
    setText($('total-origin-bytes'), bytes(t.bytesFromOrigin));
    setText($('total-saved'), saved(t.originSaved));
    $('total-saved').dataset.value = t.originSaved === null ? '' : String(t.originSaved);
    setText($('total-throughput'), rate(t.throughput));
    spark($('total-spark'), doc.history, 'aggregate throughput over the last ' +
      (doc.history || []).length + ' samples, now ' + rate(t.throughput));
  }

  function renderTasks(tasks) {
    keyed($('tasks'), tasks, (t) => t.node + '/' + t.taskID, (tr) => {
      const name = el('td', { class: 'task-name' });
      const b = el('button', { type: 'button', class: 'link' });
      b.addEventListener('click', () => openPieces(tr.dataset.taskId));
      name.appendChild(b);
      name.appendChild(el('div', { class: 'url' }));
      tr.appendChild(name);
      for (const c of ['task-size', 'task-status', 'seed-progress', 'swarm-progress', 'task-peers', 'task-bytes', 'task-saved', 'task-spark']) {
        tr.appendChild(el('td', { class: c }));
      }
    }, (tr, t) => {
      tr.dataset.taskId = t.taskID;
      tr.dataset.status = t.status;
      const b = tr.querySelector('.task-name button');
      setText(b, t.name);
      b.setAttribute('aria-label', 'Piece map of ' + t.name);
      setText(tr.querySelector('.url'), t.url);
      setText(tr.querySelector('.task-size'), t.length > 0 ? bytes(t.length) : '?');
      const st = tr.querySelector('.task-status');
      setText(st, t.status + (t.error ? ': ' + t.error : ''));
      st.className = 'task-status state-' + t.status;
      progressCell(tr.querySelector('.seed-progress'), t.seedProgress, 'seed progress of ' + t.name);
      progressCell(tr.querySelector('.swarm-progress'), t.swarmProgress, 'swarm progress of ' + t.name);
      tr.querySelector('.swarm-progress').dataset.progress = String(t.swarmProgress);
      const s = t.spread || [0, 0, 0, 0, 0];
      setText(tr.querySelector('.task-peers'), t.peersDone + ' / ' + t.peers);
      tr.querySelector('.task-peers').title = 'peers by progress: <25 %: ' + s[0] + ', 25–50 %: ' + s[1] +
        ', 50–75 %: ' + s[2] + ', 75–99 %: ' + s[3] + ', complete: ' + s[4];
      setText(tr.querySelector('.task-bytes'), bytes(t.bytesFromPeers) + ' / ' + bytes(t.bytesFromSeed) + ' / ' + bytes(t.bytesFromOrigin));
      setText(tr.querySelector('.task-saved'), saved(t.originSaved));
      const td = tr.querySelector('.task-spark');
      let sp = td.querySelector('.spark-cell');
      if (!sp) { sp = el('div', { class: 'spark-cell' }); sp.appendChild(el('span', { class: 'rate' })); td.appendChild(sp); }
      const label = sp.querySelector('.rate');
      setText(label, rate(t.throughput));
      spark(sp, t.history, 'throughput of ' + t.name + ', now ' + rate(t.throughput));
    }, 'tasks-empty');
  }

  function renderPeers(peers) {
    keyed($('peers'), peers, (p) => p.node + '/' + p.peerID, (tr) => {
      for (const c of ['peer-id', 'peer-addr', 'peer-place', 'peer-tasks', 'peer-down', 'peer-up', 'peer-failures', 'peer-state']) {
        tr.appendChild(el('td', { class: c }));
      }
    }, (tr, p) => {
      tr.dataset.peerId = p.peerID;
      setText(tr.querySelector('.peer-id'), p.peerID + (p.hostname && p.hostname !== p.peerID ? ' (' + p.hostname + ')' : ''));
      setText(tr.querySelector('.peer-addr'), p.addr || '–');
      setText(tr.querySelector('.peer-place'), [p.idc || '–', p.rack || '–'].join(' / '));
      setText(tr.querySelector('.peer-tasks'), String(p.tasks));
      setText(tr.querySelector('.peer-down'), rate(p.downloadRate));
      setText(tr.querySelector('.peer-up'), p.uploadRate === null || p.uploadRate === undefined ? 'not reported' : rate(p.uploadRate));
      setText(tr.querySelector('.peer-failures'), String(p.failures));
      const st = tr.querySelector('.peer-state');
      setText(st, p.isolated ? 'isolated' + (p.reason ? ' (' + p.reason + ')' : '') : 'active');
      st.className = 'peer-state ' + (p.isolated ? 'state-failed' : 'state-complete');
      tr.classList.toggle('isolated', p.isolated);
    }, 'peers-empty');
  }

  function renderPreheats(list) {
    keyed($('preheats'), list, (p) => p.node + '/' + p.id, (tr) => {
      const name = el('td', { class: 'preheat-name' });
      name.appendChild(el('div', { class: 'id' }));
      name.appendChild(el('div', { class: 'url' }));
      tr.appendChild(name);
      for (const c of ['preheat-type', 'preheat-trigger', 'preheat-state', 'preheat-progress', 'preheat-error']) {
        tr.appendChild(el('td', { class: c }));
      }
    }, (tr, p) => {
      setText(tr.querySelector('.id'), p.id);
      setText(tr.querySelector('.url'), p.url + (p.platform ? ' (' + p.platform + ')' : ''));
      setText(tr.querySelector('.preheat-type'), p.type);
      setText(tr.querySelector('.preheat-trigger'), p.trigger);
      const st = tr.querySelector('.preheat-state');
      setText(st, p.state);
      st.className = 'preheat-state state-' + p.state;
      progressCell(tr.querySelector('.preheat-progress'), p.length > 0 ? p.present / p.length : 0,
        'preheat ' + p.id + ': ' + bytes(p.present) + ' of ' + bytes(p.length));
      setText(tr.querySelector('.preheat-error'), p.error || '');
    }, 'preheats-empty');
  }

  function strip(container, n, cls) {
    if (container.childElementCount !== n) {
      container.replaceChildren();
      for (let i = 0; i < n; i++) container.appendChild(el('span'));
    }
    for (let i = 0; i < n; i++) container.children[i].className = cls(i);
  }

  async function renderPieces() {
    if (!selectedTask) return;
    const m = await api('/api/v1/tasks/' + encodeURIComponent(selectedTask) + '/pieces');
    const seedHas = Array.from(m.seed).filter((c) => c === '1').length;
    const full = m.holders.filter((h) => m.peers > 0 && h >= m.peers).length;
    const none = m.holders.filter((h) => h === 0).length;
    setText($('pieces-title'), 'Piece map of ' + (document.querySelector('tr[data-task-id="' + CSS.escape(selectedTask) + '"] .task-name button') || {}).textContent);
    setText($('pieces-summary'), m.numPieces + ' pieces of ' + bytes(m.pieceSize) + '. The seed holds ' + seedHas +
      '. Of ' + m.peers + ' peers: ' + full + ' pieces held by every peer, ' + none + ' by none.');
    $('seed-strip').setAttribute('aria-label', 'seed holds ' + seedHas + ' of ' + m.numPieces + ' pieces');
    $('peer-strip').setAttribute('aria-label', full + ' pieces held by every peer, ' + none + ' by none');
    strip($('seed-strip'), m.numPieces, (i) => m.seed[i] === '1' ? 'p all' : 'p none');
    strip($('peer-strip'), m.numPieces, (i) => {
      const h = m.holders[i];
      if (h === 0) return 'p none';
      if (h >= m.peers) return 'p all';
      return 'p some h' + Math.min(3, Math.floor(4 * h / m.peers));
    });
    for (let i = 0; i < m.numPieces; i++) {
      $('peer-strip').children[i].title = 'piece ' + i + ': ' + m.holders[i] + ' of ' + m.peers + ' peers';
    }
  }

  function openPieces(id) {
    selectedTask = id;
    $('pieces').hidden = false;
    renderPieces().then(() => $('pieces-close').focus()).catch(handleError);
  }

  // ---- state ----
  function showLogin(message) {
    signedOut = true;
    $('app').hidden = true;
    // Drop whatever an earlier token showed.
    for (const id of ['tasks', 'peers', 'preheats']) $(id).tBodies[0].replaceChildren();
    for (const e of document.querySelectorAll('.totals .value')) e.textContent = '–';
    $('total-spark').replaceChildren();
    setText($('node-info'), '');
    $('login').hidden = false;
    setText($('login-error'), message || '');
    setText($('conn'), 'Sign in to see the swarm.');
    $('token').focus();
  }

  function handleError(err) {
    if (err instanceof AuthError) {
      const had = token !== '';
      token = '';
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(had ? 'That token was refused.' : '');
      return;
    }
    setText($('conn'), 'Update failed: ' + err.message + ' (retrying)');
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const doc = await api('/api/v1/dashboard');
      signedOut = false;
      $('login').hidden = true;
      $('app').hidden = false;
      const n = doc.nodes || [];
      setText($('node-info'), n.length === 1 ? 'Supernode ' + n[0].supernode + ', up ' + n[0].uptime
        : n.length + ' supernodes: ' + n.map((x) => x.supernode + (x.down ? ' (down)' : ', up ' + x.uptime)).join('; '));
      const m = merge(doc);
      renderTotals(doc);
      renderTasks(m.tasks);
      renderPeers(m.peers);
      renderPreheats(m.preheats);
      if (selectedTask) await renderPieces();
      setText($('conn'), 'Updated ' + new Date(doc.generatedAt).toLocaleTimeString());
    } catch (err) {
      handleError(err);
    }
    if (!signedOut) timer = setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      token = $('token').value.trim();
      $('token').value = '';
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      signedOut = false;
      refresh();
    });
    $('pieces-close').addEventListener('click', () => {
      const id = selectedTask;
      selectedTask = null;
      $('pieces').hidden = true;
      const b = document.querySelector('tr[data-task-id="' + CSS.escape(id || '') + '"] .task-name button');
      if (b) b.focus();
    });
    refresh();
  });
})();
