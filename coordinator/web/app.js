// Barrage's dashboard and report page. Live: the state comes from /events
// (server-sent events: `init` with everything so far, then a `point` per closed
// window and a `board` with the tables). Report: the same state is inlined as
// window.BARRAGE_REPORT, with the summary JSON, and nothing is fetched.
(function () {
  'use strict';

  var report = window.BARRAGE_REPORT || null;
  var state = { info: { name: '', scenarios: [] }, points: [], board: null };
  var scope = 0; // 0 = the whole run, k = scenario k - 1
  var charts = [];

  // ---- helpers -------------------------------------------------------------

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') e.textContent = attrs[k];
        else if (k === 'cls') e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c == null) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function num(v, digits) {
    if (v == null || !isFinite(v)) return '–';
    var d = digits == null ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
    return Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  function ms(v) { return v == null ? '–' : num(v) + ' ms'; }
  function pct(v) { return v == null ? '–' : num(v * 100, 2) + ' %'; }
  function secs(v) { return v == null ? '–' : num(v, 1) + ' s'; }

  function table(id, head, rows, empty) {
    var t = document.getElementById(id);
    t.textContent = '';
    var tr = el('tr');
    head.forEach(function (h) { tr.appendChild(el('th', { text: h })); });
    t.appendChild(el('thead', null, tr));
    var body = el('tbody');
    if (!rows.length) {
      body.appendChild(el('tr', null, el('td', { cls: 'empty', colspan: String(head.length), text: empty })));
    }
    rows.forEach(function (r) {
      var row = el('tr');
      r.forEach(function (c) {
        if (c && c.nodeType) row.appendChild(el('td', null, c));
        else if (typeof c === 'number') row.appendChild(el('td', { cls: 'num', text: num(c, Number.isInteger(c) ? 0 : null) }));
        else row.appendChild(el('td', { text: c == null ? '–' : String(c) }));
      });
      body.appendChild(row);
    });
    t.appendChild(body);
  }

  function badge(s) { return el('span', { cls: 'badge ' + s, 'data-state': s, text: s.replace('_', ' ') }); }

  // ---- scopes, tiles and charts --------------------------------------------

  function scopeName(k) { return k === 0 ? 'all scenarios' : state.info.scenarios[k - 1]; }

  function renderScopes() {
    var nav = document.getElementById('scopes');
    nav.textContent = '';
    var names = ['all scenarios'].concat(state.info.scenarios);
    names.forEach(function (n, k) {
      var b = el('button', { type: 'button', 'data-scope': String(k), text: n, cls: k === scope ? 'on' : '' });
      b.addEventListener('click', function () { scope = k; renderScopes(); rebuildCharts(); renderTiles(); });
      nav.appendChild(b);
    });
  }

  var TILES = [
    ['reqs', 'requests/s', function (s) { return num(s.reqs); }],
    ['err_rate', 'errors', function (s) { return pct(s.err_rate); }],
    ['p95', 'latency p95', function (s) { return ms(s.p95); }],
    ['p99', 'latency p99', function (s) { return ms(s.p99); }],
    ['vus', 'VUs', function (s) { return num(s.vus, 0); }],
    ['iters', 'iterations/s', function (s) { return num(s.iters); }],
    ['dropped', 'dropped/s', function (s) { return num(s.dropped); }],
    ['delay_p95', 'start delay p95', function (s) { return ms(s.delay_p95); }]
  ];

  function renderTiles() {
    var box = document.getElementById('tiles');
    box.textContent = '';
    var last = state.points.length ? state.points[state.points.length - 1].scopes[scope] : null;
    TILES.forEach(function (t) {
      box.appendChild(el('div', { cls: 'tile' },
        el('div', { cls: 'label', text: t[1] }),
        el('div', { cls: 'value', 'data-stat': t[0], text: last ? t[2](last) : '–' })));
    });
    var total = 0;
    state.points.forEach(function (p) { total += p.scopes[scope].iters * p.w; });
    box.appendChild(el('div', { cls: 'tile' },
      el('div', { cls: 'label', text: 'iterations' }),
      el('div', { cls: 'value', 'data-stat': 'iterations', text: num(Math.round(total), 0) })));
  }

  // Each chart: a title and series taken from a scope's point.
  var CHARTS = [
    { title: 'Requests per second', series: [['requests/s', '#3056d3', 'reqs'], ['failed/s', '#c62828', 'failed']] },
    { title: 'Latency (ms, from each second\'s merged histograms)', series: [
      ['p50', '#7aa2f7', 'p50'], ['p90', '#3056d3', 'p90'], ['p95', '#e0a100', 'p95'], ['p99', '#c62828', 'p99']] },
    { title: 'Error rate (%)', series: [['errors %', '#c62828', 'err_pct']] },
    { title: 'VUs', series: [['active', '#14804a', 'vus'], ['allocated', '#9aa5b1', 'vus_max']] },
    { title: 'Iterations per second', series: [['completed/s', '#3056d3', 'iters'], ['dropped/s', '#c62828', 'dropped']] },
    { title: 'iteration_start_delay p95 (ms)', series: [['p95', '#b26a00', 'delay_p95']] }
  ];

  function value(s, key) {
    if (key === 'err_pct') return s.err_rate == null ? null : s.err_rate * 100;
    var v = s[key];
    return v == null ? null : v;
  }

  function columns(c) {
    var cols = [state.points.map(function (p) { return p.t; })];
    c.series.forEach(function (s) {
      cols.push(state.points.map(function (p) { return value(p.scopes[scope], s[2]); }));
    });
    return cols;
  }

  function chartWidth(box) { return Math.max(300, box.clientWidth - 16); }

  function rebuildCharts() {
    var box = document.getElementById('charts');
    charts.forEach(function (u) { u.destroy(); });
    charts = [];
    box.textContent = '';
    CHARTS.forEach(function (c, i) {
      var div = el('div', { cls: 'chart', 'data-chart': String(i) });
      box.appendChild(div);
      var opts = {
        title: c.title + ' · ' + scopeName(scope),
        width: chartWidth(div),
        height: 220,
        scales: { x: { time: false } },
        axes: [{ label: 'test time (s)' }, {}],
        series: [{ label: 't (s)' }].concat(c.series.map(function (s) {
          return { label: s[0], stroke: s[1], width: 1.5, spanGaps: false };
        }))
      };
      charts.push(new uPlot(opts, columns(c), div));
    });
  }

  function updateCharts() {
    CHARTS.forEach(function (c, i) { if (charts[i]) charts[i].setData(columns(c)); });
  }

  window.addEventListener('resize', function () {
    charts.forEach(function (u) { u.setSize({ width: chartWidth(u.root.parentNode), height: 220 }); });
  });

  // ---- tables --------------------------------------------------------------

  function renderBoard() {
    var b = state.board;
    if (!b) return;
    document.getElementById('elapsed').textContent = 'test time ' + secs(b.elapsed_s);
    var st = document.getElementById('status');
    if (report || b.ended) { st.textContent = b.ended ? 'ended: ' + b.ended : 'report'; st.className = 'status ended'; }
    table('thresholds', ['metric', 'threshold', 'state', 'observed'], b.thresholds.map(function (t) {
      var row = [t.metric, t.expr + (t.abort_on_fail ? ' (abortOnFail)' : ''), badge(t.state),
        t.observed == null ? (t.reason || '–') : num(t.observed)];
      return row;
    }), 'no thresholds');
    var last = state.points.length ? state.points[state.points.length - 1] : null;
    table('scenarios', ['scenario', 'req/s', 'errors', 'p95', 'VUs', 'iter/s', 'dropped/s'],
      state.info.scenarios.map(function (name, k) {
        var s = last ? last.scopes[k + 1] : {};
        return [el('span', { 'data-scenario': name, text: name }), last ? s.reqs : null, pct(s.err_rate),
          ms(s.p95), last ? s.vus : null, last ? s.iters : null, last ? s.dropped : null];
      }), 'no scenarios');
    table('agents', ['agent', 'address', 'share', 'req/s', 'iter/s', 'start skew', 'health', 'lost', 'share went to'],
      b.agents.map(function (a) {
        return [el('span', { 'data-agent': a.name, text: a.name }), a.addr || 'in-process', pct(a.share),
          a.reqs, a.iters, a.start_skew_ms == null ? '–' : num(a.start_skew_ms, 2) + ' ms', badge(a.health),
          a.lost_at_s == null ? '' : 'at ' + secs(a.lost_at_s) + ': ' + a.lost_why,
          a.handed_to.join(', ')];
      }), 'no agents yet');
    table('checks', ['check', 'group', 'passes', 'fails'], b.checks.map(function (c) {
      return [c.name, c.group || '(root)', c.passes, c.fails];
    }), 'no checks');
    table('errors', ['cause', 'count'], b.errors.map(function (e) { return [e.cause, e.count]; }), 'no failed requests');
  }

  // The summary's metrics, as k6's end-of-test summary lists them.
  function renderSummary(summary) {
    if (!summary || !summary.metrics) return;
    document.getElementById('summary-panel').hidden = false;
    var names = Object.keys(summary.metrics).sort();
    table('summary', ['metric', 'type', 'values', 'thresholds'], names.map(function (n) {
      var m = summary.metrics[n];
      var vals = Object.keys(m.values || {}).map(function (k) {
        var v = m.values[k];
        if (m.contains === 'time' && k !== 'count' && k !== 'rate') return k + '=' + ms(v);
        return k + '=' + num(v, Number.isInteger(v) ? 0 : null);
      }).join('  ');
      var th = Object.keys(m.thresholds || {}).map(function (k) {
        return k + (m.thresholds[k].ok ? ' ✓' : ' ✗');
      }).join(', ');
      var cell = el('span', { 'data-metric': n, text: vals });
      return [n, m.type, cell, th];
    }), 'no metrics');
    var it = summary.metrics.iterations;
    var tiles = document.getElementById('tiles');
    tiles.insertBefore(el('div', { cls: 'tile' },
      el('div', { cls: 'label', text: 'iterations (summary)' }),
      el('div', { cls: 'value', 'data-stat': 'summary-iterations',
        text: it && it.values ? String(it.values.count) : '0' })), tiles.firstChild);
  }

  // ---- events --------------------------------------------------------------

  function onInit(d) {
    state.info = d.info;
    state.points = d.points;
    state.board = d.board;
    document.getElementById('test-name').textContent = d.info.name;
    document.title = 'Barrage · ' + d.info.name;
    if (scope > state.info.scenarios.length) scope = 0;
    renderScopes();
    rebuildCharts();
    renderTiles();
    renderBoard();
  }

  function onPoint(p) {
    state.points.push(p);
    updateCharts();
    renderTiles();
  }

  function onBoard(b) {
    state.board = b;
    renderBoard();
  }

  if (report) {
    onInit(report.init);
    renderSummary(report.summary);
    return;
  }
  var src = new EventSource('/events');
  var st = document.getElementById('status');
  src.addEventListener('open', function () { st.textContent = 'live'; st.className = 'status live'; });
  src.addEventListener('error', function () {
    if (state.board && state.board.ended) { src.close(); return; }
    st.textContent = 'disconnected, retrying'; st.className = 'status lost';
  });
  src.addEventListener('init', function (e) { onInit(JSON.parse(e.data)); });
  src.addEventListener('point', function (e) { onPoint(JSON.parse(e.data)); });
  src.addEventListener('board', function (e) { onBoard(JSON.parse(e.data)); });
})();
