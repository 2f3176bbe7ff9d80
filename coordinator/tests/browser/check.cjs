// Drives headless Chromium (Debian's, through playwright-core) over Barrage's
// dashboard or HTML report and prints what it saw as one JSON line; the Rust test
// (coordinator/tests/dashboard.rs) asserts on it. Every wait has a deadline.
//
//   node check.cjs live   URL  SHOT.png  THRESHOLD_METRIC
//   node check.cjs report FILE SHOT.png
//   node check.cjs hour   FILE SHOT.png
//
// live: waits for the page's numbers to change second by second, and for the
// threshold on THRESHOLD_METRIC to be shown failing; reports the scenario and agent
// names it shows. report: opens the file with every request but file: aborted and
// reports the iteration count it shows. hour: opens a report holding an hour of
// points and times how long the page takes to draw it and to redraw every chart for
// another scope.
'use strict';

const { chromium } = require('playwright-core');

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

async function texts(page, selector, attr) {
  return page.$$eval(selector, (els, a) => els.map((e) => e.getAttribute(a)), attr);
}

async function live(page, url, shot, metric) {
  const out = { iterations: [], thresholdStates: [], errors: [] };
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.goto(url, { timeout: 15000 });
  await page.waitForSelector('[data-stat="iterations"]', { timeout: 15000 });
  const deadline = Date.now() + 25000;
  let failing = false;
  // Sample twice a second: the iterations so far, and the threshold's state.
  while (Date.now() < deadline) {
    const it = await page.textContent('[data-stat="iterations"]');
    const t = Date.now();
    if (!out.iterations.length || out.iterations[out.iterations.length - 1].value !== it) {
      out.iterations.push({ at_ms: t, value: it });
    }
    const state = await page.evaluate((m) => {
      const rows = Array.from(document.querySelectorAll('#thresholds tbody tr'));
      const row = rows.find((r) => r.firstChild && r.firstChild.textContent === m);
      const b = row && row.querySelector('[data-state]');
      return b ? b.getAttribute('data-state') : null;
    }, metric);
    if (!out.thresholdStates.length || out.thresholdStates[out.thresholdStates.length - 1] !== state) {
      out.thresholdStates.push(state);
    }
    failing = state === 'failing';
    if (failing && out.iterations.length >= 4) break;
    await page.waitForTimeout(500);
  }
  out.status = await page.textContent('#status');
  out.reqs = await page.textContent('[data-stat="reqs"]');
  out.p95 = await page.textContent('[data-stat="p95"]');
  out.scenarios = await texts(page, '[data-scenario]', 'data-scenario');
  out.scopes = await page.$$eval('#scopes button', (bs) => bs.map((b) => b.textContent));
  out.agents = await texts(page, '[data-agent]', 'data-agent');
  out.agentHealth = await texts(page, '#agents [data-state]', 'data-state');
  out.canvases = await page.$$eval('.chart canvas', (cs) => cs.length);
  await page.screenshot({ path: shot, fullPage: true });
  return out;
}

async function report(page, file, shot) {
  const out = { blocked: [], errors: [] };
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith('file:')) return route.continue();
    out.blocked.push(u);
    return route.abort();
  });
  await page.goto('file://' + file, { timeout: 15000 });
  await page.waitForSelector('[data-stat="summary-iterations"]', { timeout: 15000 });
  out.iterations = await page.textContent('[data-stat="summary-iterations"]');
  out.chartIterations = await page.textContent('[data-stat="iterations"]');
  out.summaryMetrics = await texts(page, '[data-metric]', 'data-metric');
  out.scenarios = await texts(page, '[data-scenario]', 'data-scenario');
  out.agents = await texts(page, '[data-agent]', 'data-agent');
  out.thresholdStates = await texts(page, '#thresholds [data-state]', 'data-state');
  out.canvases = await page.$$eval('.chart canvas', (cs) => cs.length);
  out.points = await page.evaluate(() => window.BARRAGE_REPORT.init.points.length);
  await page.screenshot({ path: shot, fullPage: true });
  return out;
}

async function hour(page, file, shot) {
  const out = { errors: [] };
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
  const t0 = Date.now();
  await page.goto('file://' + file, { timeout: 30000 });
  await page.waitForSelector('.chart canvas', { timeout: 30000 });
  out.load_ms = Date.now() - t0;
  out.points = await page.evaluate(() => window.BARRAGE_REPORT.init.points.length);
  // Every chart redrawn from all points for another scope, then back.
  out.switch_ms = await page.evaluate(async () => {
    const t = performance.now();
    for (let i = 0; i < 5; i++) {
      document.querySelectorAll('#scopes button')[1 + (i % 2)].click();
      await new Promise((r) => requestAnimationFrame(() => r()));
    }
    document.querySelectorAll('#scopes button')[0].click();
    await new Promise((r) => requestAnimationFrame(() => r()));
    return (performance.now() - t) / 6;
  });
  await page.screenshot({ path: shot, fullPage: false });
  return out;
}

(async () => {
  const [mode, target, shot, metric] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: 30000,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const run = { live: () => live(page, target, shot, metric), report: () => report(page, target, shot), hour: () => hour(page, target, shot) };
    if (!run[mode]) throw new Error('unknown mode ' + mode);
    const out = await run[mode]();
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
