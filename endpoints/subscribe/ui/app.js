// Sluice live records: subscribes to a topic over WebSocket (protocol in
// docs/subscribe.md), shows the newest records and a records/s chart, and
// resumes from the last position after a disconnect.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_ROWS = 200;         // rows kept in the table
  const SECONDS = 60;           // width of the rate chart
  const DEDUPE = 10000;         // record ids remembered across reconnects
  const NO_RETRY = new Set([4400, 4403, 4404]);

  let conf = { path: '/subscribe', topics: [], heartbeat_ms: 5000 };
  let ws = null;
  let want = false;             // the user wants to be subscribed
  let pos = null;               // resume point: pos of the last message
  let attempt = 0;
  let retryTimer = null;
  let lastMessage = 0;
  let count = 0;
  let reconnects = 0;
  let pending = [];
  let drawQueued = false;
  const seen = new Map();
  const buckets = new Array(SECONDS).fill(0);
  let bucketSec = Math.floor(Date.now() / 1000);

  function say(text, error) {
    $('message').textContent = text || '';
    $('message').className = error ? 'error' : '';
  }

  function status(kind, text) {
    $('status').className = 'status ' + kind;
    $('status-text').textContent = text;
  }

  function subscribeURL() {
    const u = new URL(conf.path, location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('topic', $('topic').value);
    u.searchParams.set('from', pos || $('from').value.trim() || 'latest');
    const dev = $('device').value.trim();
    if (dev) u.searchParams.set('device_id', dev);
    const where = $('where').value.trim();
    if (where) u.searchParams.set('where', where);
    return u.toString();
  }

  // The token travels as a subprotocol, "sluice.bearer.<base64url>",
  // beside "sluice" (browsers cannot set an Authorization header on a
  // WebSocket, and a URL would put it in logs; docs/security.md). It is
  // kept in sessionStorage: gone when the tab closes.
  function protocols() {
    const tok = $('token').value.trim();
    if (!tok) return undefined;
    let bin = '';
    for (const b of new TextEncoder().encode(tok)) bin += String.fromCharCode(b);
    return ['sluice', 'sluice.bearer.' + btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')];
  }

  function connect() {
    clearTimeout(retryTimer);
    if (conf.auth) {
      try { sessionStorage.setItem('sluice-token', $('token').value.trim()); } catch { /* storage disabled */ }
    }
    const sock = new WebSocket(subscribeURL(), protocols());
    ws = sock;
    let opened = false;
    sock.onopen = () => { opened = true; };
    lastMessage = Date.now();
    status('retry', attempt ? 'reconnecting…' : 'connecting…');
    sock.onmessage = (ev) => {
      if (sock !== ws) return;
      lastMessage = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.pos) pos = msg.pos;
      $('pos').textContent = pos || '–';
      switch (msg.type) {
        case 'subscribed':
          attempt = 0;
          if (msg.heartbeat_ms) conf.heartbeat_ms = msg.heartbeat_ms;
          status('live', 'live · ' + msg.topic);
          say(msg.expired ? 'Some records had expired before they could be read: ' + msg.expired : '');
          return;
        case 'lagging':
          say('This view fell behind; catching up from its position.');
          return;
        case 'checkpoint':
          return;
        case undefined:
          break;
        default:
          return;
      }
      const id = msg.device_id !== undefined && msg.seq !== undefined
        ? msg.device_id + '/' + msg.seq + '/' + (msg.part || 0) : null;
      if (id !== null) {
        if (seen.has(id)) return;
        seen.set(id, true);
        if (seen.size > DEDUPE) seen.delete(seen.keys().next().value);
      }
      count++;
      roll();
      buckets[SECONDS - 1]++;
      pending.push(msg);
      if (pending.length > MAX_ROWS) pending = pending.slice(-MAX_ROWS);
      if (!drawQueued) { drawQueued = true; requestAnimationFrame(render); }
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      ws = null;
      if (!want) { status('idle', 'not connected'); return; }
      if (NO_RETRY.has(ev.code)) {
        want = false;
        button();
        status('error', 'refused');
        say(ev.reason || 'The subscription was refused (' + ev.code + ').', true);
        return;
      }
      if (ev.code === 4000) say('Disconnected for falling behind; resuming from the last position.');
      else if (conf.auth && !opened) say('Could not connect: is the token right? (a refused token gets HTTP 401, which a browser does not show)', true);
      else if (ev.reason) say(ev.reason);
      retry(ev.code);
    };
  }

  // retry reconnects after a jittered, growing delay (short after a
  // lagging disconnect), resuming from pos.
  function retry(code) {
    const base = code === 4000 ? 100 : Math.min(10000, 250 * 2 ** attempt);
    attempt++;
    reconnects++;
    $('reconnects').textContent = reconnects;
    status('retry', 'reconnecting…');
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, base * (0.5 + Math.random()));
  }

  function disconnect() {
    want = false;
    clearTimeout(retryTimer);
    if (ws) { const s = ws; ws = null; s.close(1000, 'bye'); }
    status('idle', 'not connected');
  }

  function button() {
    $('connect').textContent = want ? 'Stop' : 'Subscribe';
    $('connect').className = want ? 'stop' : '';
  }

  $('controls').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (want) { disconnect(); button(); return; }
    want = true;
    pos = null; // a new subscription starts where the form says
    attempt = 0;
    count = 0;
    seen.clear();
    pending = [];
    $('rows').textContent = '';
    $('empty').hidden = false;
    $('count').textContent = '0';
    say('');
    button();
    connect();
  });

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function time(ms) {
    if (!ms) return '';
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function render() {
    drawQueued = false;
    const rows = $('rows');
    const frag = document.createDocumentFragment();
    for (let i = pending.length - 1; i >= 0; i--) {
      const m = pending[i];
      const tr = document.createElement('tr');
      tr.className = 'fresh';
      cell(tr, time(m.ts));
      cell(tr, m.partition + ':' + m.offset);
      cell(tr, m.device_id ?? '');
      cell(tr, m.seq ?? '');
      cell(tr, m.key ?? '');
      let v = typeof m.value === 'string' ? m.value : JSON.stringify(m.value);
      if (v.length > 300) v = v.slice(0, 300) + '…';
      cell(tr, v, 'value');
      frag.appendChild(tr);
    }
    pending = [];
    rows.insertBefore(frag, rows.firstChild);
    while (rows.childElementCount > MAX_ROWS) rows.lastElementChild.remove();
    $('empty').hidden = rows.childElementCount > 0;
    $('count').textContent = count.toLocaleString();
  }

  // roll moves the rate buckets to the current second.
  function roll() {
    const now = Math.floor(Date.now() / 1000);
    const shift = Math.min(SECONDS, now - bucketSec);
    if (shift > 0) {
      buckets.splice(0, shift);
      for (let i = 0; i < shift; i++) buckets.push(0);
      bucketSec = now;
    }
  }

  function drawChart() {
    roll();
    const c = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const full = buckets.slice(0, SECONDS - 1); // the current second is still filling
    const peak = Math.max(5, ...full);
    const scale = niceCeil(peak);
    const left = 44, right = 8, top = 10, bottom = 20;
    const pw = w - left - right, ph = h - top - bottom;
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#8393a5';
    g.strokeStyle = '#263140';
    g.lineWidth = 1;
    for (let i = 0; i <= 5; i++) {
      const y = Math.round(top + ph - (ph * i) / 5);
      g.beginPath(); g.moveTo(left, y + 0.5); g.lineTo(w - right, y + 0.5); g.stroke();
      g.textAlign = 'right';
      g.fillText(fmt((scale * i) / 5), left - 6, y + 4);
    }
    g.textAlign = 'left';
    g.fillText('−60 s', left, h - 5);
    g.textAlign = 'right';
    g.fillText('now', w - right, h - 5);
    const step = pw / (SECONDS - 2);
    g.beginPath();
    full.forEach((v, i) => {
      const x = left + i * step, y = top + ph - (ph * v) / scale;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.strokeStyle = '#3fb4ff';
    g.lineWidth = 2;
    g.stroke();
    g.lineTo(left + (full.length - 1) * step, top + ph);
    g.lineTo(left, top + ph);
    g.closePath();
    g.fillStyle = 'rgba(63,180,255,0.15)';
    g.fill();
    $('rate').textContent = fmt(full[full.length - 1]);
  }

  function niceCeil(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    return String(Math.round(v));
  }

  setInterval(() => {
    drawChart();
    // A connection that stays silent past three heartbeats is dead.
    if (ws && Date.now() - lastMessage > 3 * conf.heartbeat_ms) {
      const s = ws;
      ws = null;
      s.close(4001, 'heartbeat missed');
      retry(0);
    }
  }, 500);

  fetch('config.json').then((r) => r.json()).then((c) => {
    conf = Object.assign(conf, c);
    const sel = $('topic');
    for (const t of conf.topics) {
      const o = document.createElement('option');
      o.value = o.textContent = t;
      sel.appendChild(o);
    }
    const q = new URLSearchParams(location.search);
    if (q.get('topic')) sel.value = q.get('topic');
    if (q.get('from')) $('from').value = q.get('from');
    if (q.get('device_id')) $('device').value = q.get('device_id');
    if (q.get('where')) $('where').value = q.get('where');
    if (conf.auth) {
      $('token-label').hidden = false;
      try { $('token').value = sessionStorage.getItem('sluice-token') || ''; } catch { /* storage disabled */ }
    }
    drawChart();
    if (q.get('connect') === '1') $('controls').requestSubmit();
  }).catch((err) => say('Could not load config.json: ' + err, true));
})();
