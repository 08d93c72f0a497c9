// Headless-Chromium check of the analytics dashboard (driven by the Python tests).
//
//   node dashboard.mjs --url 'http://127.0.0.1:8765/dashboard#token=<JWT>' \
//        --expect '{"funnel.loaded": 3, "trusted.approved": 1}' --screenshot out.png [--timeout 60] \
//        [--charts '{"funnel": 2, "latency": 2}' --live-updates 3]
//
// Opens the page, polls until every expected [data-metric] element shows a number >= its minimum
// and every chart named in --charts draws at least that many windows, with points. With --charts,
// it then checks that the charts keep their place while --live-updates more analytics updates
// arrive (live data must not reflow the page), and hovers each chart: its legend must show the
// values of a window. It takes a full-page screenshot, prints one JSON line
// {"ok", "metrics", "missing", "charts", "hover", "moved", ...} and exits 0 on success, 1 otherwise. It also fails on console errors, uncaught page errors, and any request
// or websocket to a host other than the dashboard's own and the analytics websocket's.
// Uses the system Chromium (/usr/bin/chromium); never downloads a browser.
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const USAGE = "usage: node dashboard.mjs --url <dashboard url incl. #token=...> " +
  "--expect '<json object of metric -> minimum integer>' --screenshot <png path> [--timeout 60] " +
  "[--charts '<json object of chart -> minimum windows>' --live-updates N]";

function fail(message) {
  console.error(message);
  console.log(JSON.stringify({ ok: false, metrics: {}, missing: [], error: message }));
  process.exit(1);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      url: { type: "string" }, expect: { type: "string" }, screenshot: { type: "string" },
      timeout: { type: "string", default: "60" },
      charts: { type: "string", default: "{}" }, "live-updates": { type: "string", default: "0" },
    },
  }));
} catch (error) {
  fail(`${error.message}\n${USAGE}`);
}
if (!options.url || !options.expect || !options.screenshot) fail(USAGE);
let expected;
try {
  expected = JSON.parse(options.expect);
} catch (error) {
  fail(`--expect is not JSON: ${error.message}`);
}
if (!expected || typeof expected !== "object" || Array.isArray(expected)
    || !Object.values(expected).every((v) => Number.isFinite(v))) {
  fail("--expect must be a JSON object of metric name -> minimum number");
}
let charts;
try {
  charts = JSON.parse(options.charts);
} catch (error) {
  fail(`--charts is not JSON: ${error.message}`);
}
if (!charts || typeof charts !== "object" || Array.isArray(charts) || !Object.values(charts).every((v) => Number.isFinite(v))) {
  fail("--charts must be a JSON object of chart name -> minimum number of windows");
}
const liveUpdates = Number(options["live-updates"]);
if (!(liveUpdates >= 0)) fail(`bad --live-updates: ${options["live-updates"]}`);
const timeoutMs = Number(options.timeout) * 1000;
if (!(timeoutMs > 0)) fail(`bad --timeout: ${options.timeout}`);

const pageHost = new URL(options.url).host;
const allowedHosts = new Set([pageHost]);
const consoleErrors = [];
const foreign = [];
const seen = [];  // every request/websocket URL, checked once the websocket URL is known

// A watchdog so that a wedged browser can never hang the test suite.
const watchdog = setTimeout(() => fail("watchdog: the check took far longer than --timeout"), timeoutMs + 30000);

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
let result = { ok: false, metrics: {}, missing: [...Object.keys(expected), ...Object.keys(charts)] };

// Where each chart box is on the page, and how tall the page is: what must not move.
const layout = (page) => page.evaluate(() => ({
  height: document.documentElement.scrollHeight,
  boxes: [...document.querySelectorAll("[data-chart]")].map((box) => {
    const r = box.getBoundingClientRect();
    return [box.dataset.chart, Math.round(r.x), Math.round(r.y + window.scrollY), Math.round(r.width), Math.round(r.height)];
  }),
}));
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.message}`));
  page.on("request", (request) => seen.push(request.url()));
  page.on("websocket", (socket) => seen.push(socket.url()));

  const deadline = Date.now() + timeoutMs;
  await page.goto(options.url, { waitUntil: "domcontentloaded", timeout: timeoutMs });

  let snapshot = { metrics: {}, state: null, wsUrl: null };
  for (;;) {
    snapshot = await page.evaluate(() => {
      const metrics = {};
      for (const node of document.querySelectorAll("[data-metric]")) {
        const text = node.textContent.trim();
        metrics[node.dataset.metric] = /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
      }
      return { metrics, state: document.body.dataset.state || null, wsUrl: window.__dashboard?.url || null,
        charts: window.__dashboard?.charts || {}, updates: window.__dashboard?.updates || 0 };
    });
    const missing = Object.entries(expected)
      .filter(([name, min]) => !(typeof snapshot.metrics[name] === "number" && snapshot.metrics[name] >= min))
      .map(([name]) => name);
    for (const [name, min] of Object.entries(charts)) {
      const chart = snapshot.charts[name];
      if (!chart || chart.windows < min || chart.points < 1) missing.push(`chart:${name}`);
    }
    result = { ok: missing.length === 0, metrics: snapshot.metrics, missing, state: snapshot.state, charts: snapshot.charts };
    if (result.ok || Date.now() >= deadline) break;
    await page.waitForTimeout(250);
  }

  if (result.ok && Object.keys(charts).length) {
    // live data arrives: nothing moves
    const before = await layout(page);
    const seenUpdates = snapshot.updates;
    let now = seenUpdates;
    while (now < seenUpdates + liveUpdates && Date.now() < deadline) {
      await page.waitForTimeout(250);
      now = await page.evaluate(() => window.__dashboard?.updates || 0);
    }
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    const after = await layout(page);
    result.live_updates = now - seenUpdates;
    result.moved = JSON.stringify(before) === JSON.stringify(after) ? null : { before, after };
    if (result.live_updates < liveUpdates || result.moved) result.ok = false;
    // hovering a chart shows a window's values in its legend
    result.hover = {};
    for (const name of Object.keys(charts)) {
      const over = page.locator(`[data-chart="${name}"] .u-over`);
      const box = await over.boundingBox();
      if (!box) { result.hover[name] = null; result.ok = false; continue; }
      const shows = ([when, ...ys]) => when && when !== "–" && ys.some((v) => /^-?\d+(\.\d+)?$/.test(v));
      let values = [];
      for (const at of [0.98, 0.75, 0.5, 0.25, 0.02]) {  // a window that has values (latency can be empty)
        await page.mouse.move(box.x + box.width * at, box.y + box.height / 2);
        values = await page.locator(`[data-chart="${name}"] .u-legend .u-value`).allTextContents();
        if (shows(values)) break;
      }
      result.hover[name] = values;
      if (!shows(values)) result.ok = false;
    }
    await page.mouse.move(0, 0);
  }

  if (snapshot.wsUrl) allowedHosts.add(new URL(snapshot.wsUrl).host);
  for (const url of seen) {
    const parsed = new URL(url);
    if (["http:", "https:", "ws:", "wss:"].includes(parsed.protocol) && !allowedHosts.has(parsed.host)) {
      foreign.push(url);
    }
  }
  await page.screenshot({ path: options.screenshot, fullPage: true });
} catch (error) {
  result.error = String(error?.message || error);
  result.ok = false;
} finally {
  await browser.close().catch(() => {});
}

result.console_errors = consoleErrors;
result.foreign_requests = foreign;
if (consoleErrors.length || foreign.length) result.ok = false;
clearTimeout(watchdog);
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
