import type { ClientOptions } from "persona";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Bridge, type BridgeOptions, bridge, type SdkOptions } from "../src/bridge.js";
import type { CallbackFrame, ErrorFrame } from "../src/frames.js";
import { FakeSocket, MemoryStorage } from "./fakes.js";

const INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6";
const URL = "ws://gateway.test/v1/client";

let storage: MemoryStorage;

function make(options: Partial<BridgeOptions> = {}): Bridge {
  return new Bridge({
    url: URL,
    token: "tok",
    storage,
    WebSocketImpl: FakeSocket,
    backoff: { maxDelay: 1000 },
    ...options,
  });
}

// the SDK calls these with whatever its messages hold
type Hooks = Record<
  "onLoad" | "onReady" | "onEvent" | "onComplete" | "onCancel" | "onError",
  (...args: any[]) => unknown
>;

/** The wrapped callbacks, as the SDK sees them. */
function sdk(b: Bridge, options: SdkOptions = {}): Hooks {
  return b.wrap(options) as unknown as Hooks;
}

/** The callbacks of every frame the socket carried, as [seq, kind]. */
function carried(socket: FakeSocket): [unknown, unknown][] {
  return socket.sentOf("callback").map((f) => [f.seq, (f.callback as { kind: string }).kind]);
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
  storage = new MemoryStorage();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("the wrapped options", () => {
  it("call the app's callbacks at once, unchanged, while the socket is down", () => {
    const calls: unknown[][] = [];
    const own = (name: string) =>
      function (this: unknown, ...args: unknown[]) {
        calls.push([name, this, ...args]);
        return `${name}-result`;
      };
    const options = {
      templateId: "itmpl_x",
      onLoad: own("onLoad"),
      onReady: own("onReady"),
      onEvent: own("onEvent"),
      onComplete: own("onComplete"),
      onCancel: own("onCancel"),
      onError: own("onError"),
    };
    const wrapped = make().wrap(options);
    const complete = { inquiryId: INQ, status: "completed", fields: { a: { type: "string", value: "secret" } } };
    expect(wrapped.onLoad()).toBe("onLoad-result");
    expect(wrapped.onReady()).toBe("onReady-result");
    expect(wrapped.onEvent("start", { inquiryId: INQ })).toBe("onEvent-result");
    expect(wrapped.onComplete(complete)).toBe("onComplete-result");
    expect(wrapped.onCancel({ inquiryId: INQ, sessionToken: "tok" })).toBe("onCancel-result");
    expect(wrapped.onError({ status: 0, code: "application_error" })).toBe("onError-result");
    expect(calls).toEqual([
      ["onLoad", wrapped],
      ["onReady", wrapped],
      ["onEvent", wrapped, "start", { inquiryId: INQ }],
      ["onComplete", wrapped, complete],
      ["onCancel", wrapped, { inquiryId: INQ, sessionToken: "tok" }],
      ["onError", wrapped, { status: 0, code: "application_error" }],
    ]);
    expect(calls[3]![2]).toBe(complete); // the very same argument object
    expect(wrapped.templateId).toBe("itmpl_x");
    expect(FakeSocket.last.readyState).toBe(0); // never opened
  });

  it("define every callback, even those the app left out", () => {
    const wrapped = make().wrap({ templateId: "itmpl_x" }) as Record<string, unknown>;
    for (const name of ["onLoad", "onReady", "onEvent", "onComplete", "onCancel", "onError"]) {
      expect(typeof wrapped[name]).toBe("function");
    }
  });

  it("let the app's own exception through, after recording the frame", () => {
    const b = make();
    const wrapped = b.wrap({
      onLoad: () => {
        throw new Error("app bug");
      },
    });
    expect(() => wrapped.onLoad()).toThrow("app bug");
    expect(b.pending).toBe(1);
  });

  it("never throw into the SDK when the bridge fails", () => {
    const onEvent = vi.fn();
    const wrapped = make().wrap({ onEvent });
    const hostile = Object.defineProperty({}, "boom", {
      enumerable: true,
      get: () => {
        throw new Error("getter");
      },
    });
    expect(() => wrapped.onEvent("start", hostile)).not.toThrow();
    expect(onEvent.mock.calls[0]![1]).toBe(hostile);
  });

  it("fit the SDK's own option type", () => {
    const options: ClientOptions = bridge(
      { templateId: "itmpl_x", onComplete: ({ inquiryId }) => void inquiryId, onEvent: (name) => void name },
      { url: URL, token: "tok", storage, WebSocketImpl: FakeSocket },
    );
    expect(options.templateId).toBe("itmpl_x");
  });
});

describe("sending", () => {
  it("authenticates first, then sends the buffered frames in seq order", () => {
    const wrapped = sdk(make());
    wrapped.onLoad();
    wrapped.onReady();
    wrapped.onEvent("start", { inquiryId: INQ });
    const socket = FakeSocket.last;
    expect(FakeSocket.all).toHaveLength(1);
    socket.accept();
    expect(socket.sent[0]).toEqual({ type: "auth", token: "tok" });
    expect(carried(socket)).toEqual([
      [0, "onLoad"],
      [1, "onReady"],
      [2, "onEvent"],
    ]);
  });

  it("sends at once when ready, with the inquiry once known", () => {
    const b = make();
    const wrapped = sdk(b);
    wrapped.onLoad();
    FakeSocket.last.accept();
    wrapped.onEvent("start", { inquiryId: INQ });
    wrapped.onEvent("document-upload", { side: "front" });
    const frames = FakeSocket.last.sentOf("callback");
    expect(frames.map((f) => f.inquiry)).toEqual([undefined, INQ, INQ]);
    expect(frames[2]).toEqual({
      type: "callback",
      session: b.session,
      seq: 2,
      ts: Date.now(),
      inquiry: INQ,
      callback: { kind: "onEvent", name: "document-upload", metadata: { side: "front" } },
    });
  });

  it("redacts the session token and the field values by default", () => {
    const wrapped = sdk(make());
    wrapped.onComplete({
      inquiryId: INQ,
      status: "completed",
      fields: { "name-first": { type: "string", value: "Jane" } },
    });
    wrapped.onCancel({ inquiryId: INQ, sessionToken: "resume-me" });
    FakeSocket.last.accept();
    const callbacks = FakeSocket.last.sentOf("callback").map((f) => f.callback);
    expect(callbacks).toEqual([
      { kind: "onComplete", inquiryId: INQ, status: "completed", fields: { "name-first": { type: "string" } } },
      { kind: "onCancel", inquiryId: INQ },
    ]);
    expect(storage.items.get("persona-stream:bridge")).not.toMatch(/Jane|resume-me/);
  });

  it("takes the inquiry from the SDK options of a resumed flow", () => {
    const b = make();
    sdk(b, { inquiryId: INQ }).onLoad();
    FakeSocket.last.accept();
    expect(FakeSocket.last.sentOf("callback")[0]).toMatchObject({ inquiry: INQ });
    expect(b.inquiry).toBe(INQ);
  });

  it("drops a frame larger than the gateway accepts instead of sending it", () => {
    const onDrop = vi.fn();
    const b = make({ onDrop });
    const wrapped = sdk(b);
    wrapped.onEvent("form-update", { text: "x".repeat(500) });
    wrapped.onLoad();
    FakeSocket.last.accept({ max_frame_bytes: 300 });
    expect(carried(FakeSocket.last)).toEqual([[1, "onLoad"]]);
    expect(onDrop).toHaveBeenCalledWith([expect.objectContaining({ seq: 0 })], "too-large");
    expect(b.dropped).toBe(1);
  });
});

describe("pacing", () => {
  it("keeps under the rate the gateway announced", async () => {
    const b = make();
    const wrapped = sdk(b);
    for (let i = 0; i < 6; i++) wrapped.onEvent("page-change", { i });
    FakeSocket.last.accept({ max_frame_bytes: 65536, rate_per_second: 10, rate_burst: 3 });
    expect(carried(FakeSocket.last)).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(100);
    expect(carried(FakeSocket.last)).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(200);
    expect(carried(FakeSocket.last).map(([seq]) => seq)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(b.pending).toBe(6);
  });

  it("sends a frame made while others wait behind them", async () => {
    const wrapped = sdk(make());
    wrapped.onLoad();
    wrapped.onReady();
    FakeSocket.last.accept({ rate_per_second: 10, rate_burst: 1 });
    wrapped.onEvent("start", { inquiryId: INQ });
    expect(carried(FakeSocket.last)).toEqual([[0, "onLoad"]]);
    await vi.advanceTimersByTimeAsync(200);
    expect(carried(FakeSocket.last)).toEqual([
      [0, "onLoad"],
      [1, "onReady"],
      [2, "onEvent"],
    ]);
  });
});

describe("acknowledgements", () => {
  it("are cumulative: frames up to the acked seq are forgotten", () => {
    const b = make();
    const wrapped = sdk(b);
    for (let i = 0; i < 4; i++) wrapped.onEvent("page-change", { i });
    FakeSocket.last.accept();
    FakeSocket.last.reply({ type: "ack", session: b.session, seq: 2 });
    expect(b.pending).toBe(1);
    FakeSocket.last.reply({ type: "ack", session: "another", seq: 9 });
    expect(b.pending).toBe(1);
    FakeSocket.last.reply({ type: "ack", session: b.session, seq: 3 });
    expect(b.pending).toBe(0);
  });

  it("leave only the unacknowledged frames to resend after a reconnect, with the same seq", async () => {
    const token = vi.fn().mockResolvedValueOnce("first").mockResolvedValueOnce("second");
    const b = make({ token });
    const wrapped = sdk(b);
    wrapped.onLoad();
    wrapped.onReady();
    await vi.advanceTimersByTimeAsync(0);
    const first = FakeSocket.last;
    first.accept();
    first.reply({ type: "ack", session: b.session, seq: 0 });
    wrapped.onEvent("start", { inquiryId: INQ });
    first.drop(1001, "shutdown");
    wrapped.onEvent("document-upload", null); // while down: buffered
    await vi.advanceTimersByTimeAsync(1000);
    const second = FakeSocket.last;
    expect(second).not.toBe(first);
    second.accept();
    expect(second.sent[0]).toEqual({ type: "auth", token: "second" });
    expect(carried(second)).toEqual([
      [1, "onReady"],
      [2, "onEvent"],
      [3, "onEvent"],
    ]);
    expect(token).toHaveBeenCalledTimes(2);
  });

  it("are not needed for frames already acked before a reload, and the rest is resent after it", () => {
    const before = make();
    const wrapped = sdk(before);
    wrapped.onLoad();
    wrapped.onEvent("start", { inquiryId: INQ });
    wrapped.onEvent("document-upload", null);
    FakeSocket.last.accept();
    FakeSocket.last.reply({ type: "ack", session: before.session, seq: 0 });
    // the page reloads: the socket is gone without a word, a new bridge reads the same storage
    FakeSocket.last.onclose = null;
    const after = make();
    expect(after.session).toBe(before.session);
    expect(after.pending).toBe(2);
    const socket = FakeSocket.last; // opened at once, to flush what was left
    socket.accept();
    sdk(after).onEvent("selfie-camera-capture", null);
    expect(socket.sentOf("callback").map((f) => [f.seq, f.inquiry])).toEqual([
      [1, INQ],
      [2, INQ],
      [3, INQ],
    ]);
  });
});

describe("reconnecting", () => {
  it("fetches a new token after a token close (1008) and backs off", async () => {
    const token = vi.fn(async () => `token-${token.mock.calls.length}`);
    const statuses: string[] = [];
    const b = make({ token, onStatus: (s) => statuses.push(s.state) });
    sdk(b).onLoad();
    await vi.advanceTimersByTimeAsync(0);
    FakeSocket.last.readyState = 1;
    FakeSocket.last.onopen?.({});
    FakeSocket.last.drop(1008, "token-expired");
    await vi.advanceTimersByTimeAsync(1000);
    FakeSocket.last.accept();
    expect(FakeSocket.all.map((s) => s.sentOf("auth")[0]?.token)).toEqual(["token-1", "token-2"]);
    expect(statuses).toEqual(["connecting", "retrying", "connecting", "ready"]);
  });

  it("keeps trying while the gateway is unreachable, never longer apart than maxDelay", async () => {
    const b = make({ backoff: { initialDelay: 100, maxDelay: 400 } });
    sdk(b).onLoad();
    for (let i = 0; i < 6; i++) {
      FakeSocket.last.drop(1006);
      await vi.advanceTimersByTimeAsync(400);
    }
    expect(FakeSocket.all).toHaveLength(7);
    FakeSocket.last.accept();
    expect(carried(FakeSocket.last)).toEqual([[0, "onLoad"]]);
  });

  it("replaces a socket whose acks stopped coming, and resends", async () => {
    const b = make();
    const wrapped = sdk(b);
    wrapped.onLoad();
    const first = FakeSocket.last;
    first.accept();
    wrapped.onReady();
    first.reply({ type: "ack", session: b.session, seq: 0 });
    await vi.advanceTimersByTimeAsync(29_000);
    expect(FakeSocket.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_000); // the network vanished without a close event
    expect(first.closedWith).toEqual({ code: 4000, reason: "stalled" });
    FakeSocket.last.accept();
    expect(carried(FakeSocket.last)).toEqual([[1, "onReady"]]);
  });

  it("stays idle after a close when nothing is left to send", async () => {
    const b = make();
    sdk(b).onLoad();
    FakeSocket.last.accept();
    FakeSocket.last.reply({ type: "ack", session: b.session, seq: 0 });
    FakeSocket.last.drop(1000, "idle-timeout");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(1);
    sdk(b).onReady(); // something to send again: connect at once
    expect(FakeSocket.all).toHaveLength(2);
  });

  it("stops after close()", async () => {
    const b = make();
    sdk(b).onLoad();
    b.close();
    expect(FakeSocket.last.closedWith).toEqual({ code: 1000, reason: "client-closed" });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});

describe("error frames", () => {
  it("drop a frame refused for good and report it", () => {
    const onRejected = vi.fn<(error: ErrorFrame, frame: CallbackFrame | undefined) => void>();
    const b = make({ onRejected });
    const wrapped = sdk(b);
    wrapped.onLoad();
    wrapped.onReady();
    FakeSocket.last.accept();
    const error = {
      type: "error",
      code: "invalid-frame",
      message: "bad",
      seq: 0,
      session: b.session,
      field: "callback",
      retriable: false,
    };
    FakeSocket.last.reply(error);
    expect(onRejected).toHaveBeenCalledWith(error, expect.objectContaining({ seq: 0 }));
    expect(b.pending).toBe(1);
    FakeSocket.last.reply({ type: "error", code: "invalid-json", message: "not JSON", retriable: false });
    expect(onRejected).toHaveBeenLastCalledWith(expect.objectContaining({ code: "invalid-json" }), undefined);
  });

  it("keep a rate-limited frame and resend it on a new connection after a backoff", async () => {
    const b = make();
    const wrapped = sdk(b);
    wrapped.onLoad();
    wrapped.onReady();
    const first = FakeSocket.last;
    first.accept();
    first.reply({ type: "ack", session: b.session, seq: 0 });
    first.reply({
      type: "error",
      code: "rate-limited",
      message: "slow down",
      seq: 1,
      session: b.session,
      retriable: true,
    });
    first.reply({ type: "ack", session: b.session, seq: 1 }); // covers the refused frame: ignored
    expect(first.closedWith?.code).toBe(4000);
    expect(b.pending).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    FakeSocket.last.accept();
    expect(carried(FakeSocket.last)).toEqual([[1, "onReady"]]);
  });
});

describe("the bounded buffer", () => {
  it("drops the oldest frames when the gateway is away, never silently", () => {
    const onDrop = vi.fn();
    const b = make({ bufferLimit: 3, onDrop });
    const wrapped = sdk(b);
    for (let i = 0; i < 5; i++) wrapped.onEvent("page-change", { i });
    expect(b.pending).toBe(3);
    expect(b.dropped).toBe(2);
    expect(onDrop).toHaveBeenCalledTimes(2);
    expect(onDrop).toHaveBeenLastCalledWith([expect.objectContaining({ seq: 1 })], "overflow");
    FakeSocket.last.accept();
    expect(carried(FakeSocket.last).map(([seq]) => seq)).toEqual([2, 3, 4]);
  });
});
