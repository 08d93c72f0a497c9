// Headless-Chromium check of the analytics dashboard (driven by the Python tests).
//
//   node dashboard.mjs --url 'http://127.0.0.1:8765/dashboard#token=<JWT>' \
//        --expect '{"funnel.loaded": 3, "trusted.approved": 1}' --screenshot out.png [--timeout 60]
//
// Opens the page, polls until every expected [data-metric] element shows a number >= its minimum,
// takes a full-page screenshot, prints one JSON line {"ok", "metrics", "missing", ...} and exits 0
// on success, 1 otherwise. It also fails on console errors, uncaught page errors, and any request
// or websocket to a host other than the dashboard's own and the analytics websocket's.
// Uses the system Chromium (/usr/bin/chromium); never downloads a browser.
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const USAGE = "usage: node dashboard.mjs --url <dashboard url incl. #token=...> " +
  "--expect '<json object of metric -> minimum integer>' --screenshot <png path> [--timeout 60]";

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
let result = { ok: false, metrics: {}, missing: Object.keys(expected) };
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
      return { metrics, state: document.body.dataset.state || null, wsUrl: window.__dashboard?.url || null };
    });
    const missing = Object.entries(expected)
      .filter(([name, min]) => !(typeof snapshot.metrics[name] === "number" && snapshot.metrics[name] >= min))
      .map(([name]) => name);
    result = { ok: missing.length === 0, metrics: snapshot.metrics, missing, state: snapshot.state };
    if (result.ok || Date.now() >= deadline) break;
    await page.waitForTimeout(250);
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
