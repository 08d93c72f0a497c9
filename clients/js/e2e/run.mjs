#!/usr/bin/env node
/**
 * End-to-end run of the bridge with the real Persona SDK in headless Chromium, against a running
 * persona-stream gateway. Nothing leaves the machine: this script serves e2e/, dist/ and
 * node_modules/persona on 127.0.0.1, routes the SDK's iframe (https://inquiry.withpersona.com/**)
 * to standin.html and refuses every other non-local request.
 *
 *   npm run build && node e2e/run.mjs --ws ws://127.0.0.1:8765/v1/client --token "$INGEST_JWT" \
 *     [--subscribe ws://127.0.0.1:8765/v1/subscribe --subscribe-token "$SUBSCRIBE_JWT"] \
 *     [--inquiry inq_...] [--expect-status completed] [--timeout 60] \
 *     [--pause-after start [--resume-file PATH]] [--port 0] [--reference-id user-42]
 *     [--token-url URL] [--subscribe-token-url URL]   (an app backend minting a fresh token per
 *     GET, instead of --token / --subscribe-token: exercises token refresh on open connections)
 *
 * The same options may come as one JSON argument (`node e2e/run.mjs '{"ws": ..., "token": ...}'`,
 * keys as the flags in camelCase) or as environment variables E2E_WS, E2E_TOKEN, E2E_SUBSCRIBE,
 * E2E_SUBSCRIBE_TOKEN, E2E_INQUIRY, E2E_EXPECT_STATUS, E2E_TIMEOUT, E2E_PAUSE_AFTER,
 * E2E_RESUME_FILE, E2E_PORT, E2E_REFERENCE_ID, E2E_MAX_DELAY (flags win over JSON over env).
 *
 * Output: JSON lines on stdout, each with an "event" key; the last one is the result:
 *   {"event":"paused","after":"start","inquiry":...,"session":...,"origin":...}   (with --pause-after)
 *   {"event":"result","ok":true,"origin":...,"session":...,"inquiry":...,"callbacks":[...],
 *    "sent":[...],"acks":[...],"pending":0,"dropped":0,"drops":[],"rejected":[],
 *    "statuses":[...],"connections":N,"errors":[],"failure":null,"elapsed_ms":...}
 * Exit status 0 when every callback was acknowledged (and the expected status arrived), else 1.
 *
 * Pause: with --pause-after STEP the flow stops after that step of standin.html (e.g. `start`),
 * once every callback so far is acknowledged, and prints the "paused" line. It goes on when a
 * line arrives on stdin (or stdin closes) or, with --resume-file PATH, when that file exists.
 * Meanwhile the caller may stop, restart or keep down the gateway: the bridge buffers and
 * resends, the subscription resumes with `since`.
 */

import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SERVED = ["e2e/", "dist/", "node_modules/persona/"];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json" };
const PERSONA = "https://inquiry.withpersona.com/";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const OPTIONS = {
  ws: { type: "string" },
  token: { type: "string" },
  subscribe: { type: "string" },
  "subscribe-token": { type: "string" },
  "token-url": { type: "string" },
  "subscribe-token-url": { type: "string" },
  inquiry: { type: "string" },
  "expect-status": { type: "string" },
  timeout: { type: "string" },
  "pause-after": { type: "string" },
  "resume-file": { type: "string" },
  port: { type: "string" },
  "reference-id": { type: "string" },
  "max-delay": { type: "string" },
  chromium: { type: "string" },
};

function config() {
  const { values, positionals } = parseArgs({ options: OPTIONS, allowPositionals: true });
  const camel = (flag) => flag.replace(/-(\w)/g, (_, c) => c.toUpperCase());
  const merged = {};
  for (const flag of Object.keys(OPTIONS)) {
    const env = process.env[`E2E_${flag.toUpperCase().replace(/-/g, "_")}`];
    if (env) merged[camel(flag)] = env;
  }
  if (positionals[0]) Object.assign(merged, JSON.parse(positionals[0]));
  for (const [flag, value] of Object.entries(values)) merged[camel(flag)] = value;
  if (!merged.ws || !(merged.token || merged.tokenUrl))
    throw new Error("--ws and --token (or --token-url) are required");
  return {
    ...merged,
    inquiry: merged.inquiry ?? `inq_e2e${Math.random().toString(36).slice(2, 14)}`,
    timeout: Number(merged.timeout ?? 60) * 1000,
    port: Number(merged.port ?? 0),
    maxDelay: Number(merged.maxDelay ?? 2000),
    chromium: merged.chromium ?? "/usr/bin/chromium",
  };
}

/** A static server for the page, the built bridge and the SDK; nothing else. */
async function serve(port) {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname)).replace(/^[/\\]+/, "");
    const file = join(ROOT, path);
    const allowed =
      SERVED.some((prefix) => path.startsWith(prefix)) && file.startsWith(ROOT) && !path.split(sep).includes("..");
    if (request.method !== "GET" || !allowed || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end("not found");
      return;
    }
    response.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "cache-control": "no-store",
    });
    createReadStream(file).pipe(response);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** Resolve when a line arrives on stdin (or it closes), or when `file` exists. */
function resumeSignal(file) {
  return new Promise((resolve) => {
    if (file) {
      const timer = setInterval(() => {
        if (existsSync(file)) {
          clearInterval(timer);
          resolve();
        }
      }, 100);
      return;
    }
    const lines = createInterface({ input: process.stdin });
    const done = () => {
      lines.close();
      resolve();
    };
    lines.once("line", done);
    lines.once("close", done);
  });
}

async function main() {
  const options = config();
  const started = Date.now();
  const server = await serve(options.port);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: options.chromium, headless: true, args: CHROMIUM_ARGS });
  const result = { event: "result", ok: false, origin, failure: null };
  try {
    const context = await browser.newContext();
    const blocked = [];
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(PERSONA))
        return route.fulfill({ path: join(ROOT, "e2e/standin.html"), contentType: "text/html" });
      if (url.startsWith(`${origin}/`)) return route.continue();
      if ([options.tokenUrl, options.subscribeTokenUrl].some((backend) => backend && url.startsWith(backend)))
        return route.continue(); // the app's backend, minting tokens

      blocked.push(url);
      return route.abort("blockedbyclient"); // nothing from the internet
    });
    result.blocked = blocked;
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    const hash = new URLSearchParams({
      ws: options.ws,
      token: options.token ?? "",
      ...(options.tokenUrl && { tokenUrl: options.tokenUrl }),
      ...(options.subscribeTokenUrl && { subscribeTokenUrl: options.subscribeTokenUrl }),
      maxDelay: String(options.maxDelay),
      ...(options.subscribe && { subscribe: options.subscribe, subscribeToken: options.subscribeToken ?? "" }),
      ...(options.referenceId && { referenceId: options.referenceId }),
    });
    await page.goto(`${origin}/e2e/page.html#${hash}`);
    await page.waitForFunction(() => window.e2e?.ready === true, null, { timeout: options.timeout });

    const standin = await waitForStandin(page, options.timeout);
    const play = (until) =>
      standin.evaluate(({ inquiryId, until }) => window.standin.play({ inquiryId, until }), {
        inquiryId: options.inquiry,
        until,
      });
    const acknowledged = (count) =>
      page.waitForFunction((n) => window.e2e.callbacks.length >= n && window.e2e.pending === 0, count, {
        timeout: options.timeout,
        polling: 50,
      });

    let played = [];
    if (options.pauseAfter) {
      played = await play(options.pauseAfter);
      await acknowledged(callbacksOf(played));
      emit({ event: "paused", after: options.pauseAfter, inquiry: options.inquiry, origin, ...(await summary(page)) });
      await resumeSignal(options.resumeFile);
    }
    played = played.concat(await play(undefined));
    await acknowledged(callbacksOf(played));
    if (options.expectStatus) {
      await page.waitForFunction(
        (status) => window.e2e.statuses.some((r) => r.status === status),
        options.expectStatus,
        {
          timeout: options.timeout,
          polling: 100,
        },
      );
    }
    Object.assign(result, await details(page));
    result.ok = result.pending === 0 && result.dropped === 0 && result.rejected.length === 0;
    if (!result.ok) result.failure = "frames were dropped or rejected";
    if (pageErrors.length) result.pageErrors = pageErrors;
  } catch (error) {
    result.failure = String(error?.message ?? error).split("\n")[0];
    try {
      const page = browser.contexts()[0]?.pages()[0];
      if (page) Object.assign(result, await details(page));
    } catch {
      // the page is gone: report what we have
    }
  } finally {
    result.elapsed_ms = Date.now() - started;
    await browser.close();
    server.close();
  }
  emit(result);
  return result.ok ? 0 : 1;
}

/** How many app callbacks the standin steps fire: onEvent for each, plus onLoad, onReady, onComplete. */
function callbacksOf(steps) {
  return steps.length + steps.filter((name) => ["load", "ready", "complete"].includes(name)).length;
}

async function waitForStandin(page, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const frame = page.frames().find((f) => f.url().startsWith(`${PERSONA}widget`));
    if (frame) {
      await frame.waitForFunction(() => window.standin !== undefined, null, { timeout });
      return frame;
    }
    if (Date.now() > deadline) throw new Error("the SDK's iframe never loaded");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function summary(page) {
  return page.evaluate(() => ({
    session: window.e2e.session,
    pending: window.e2e.pending,
    callbacks: window.e2e.callbacks.length,
    acks: window.e2e.acks.length,
  }));
}

function details(page) {
  return page.evaluate(() => {
    const e2e = window.e2e;
    return {
      session: e2e.session,
      inquiry: e2e.inquiry,
      callbacks: e2e.callbacks,
      sent: e2e.sent,
      acks: e2e.acks,
      pending: e2e.pending,
      dropped: e2e.dropped,
      drops: e2e.drops,
      rejected: e2e.rejected,
      statuses: e2e.statuses,
      connections: e2e.connection.filter((s) => s.state === "ready").length,
      connection: e2e.connection,
      subscription: e2e.subscription,
      errors: e2e.errors,
    };
  });
}

main().then(
  (code) => process.exit(code),
  (error) => {
    emit({ event: "result", ok: false, failure: String(error?.message ?? error) });
    process.exit(1);
  },
);
