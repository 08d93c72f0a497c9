import { describe, expect, it, vi } from "vitest";

import type { CallbackFrame } from "../src/frames.js";
import { Outbox, type OutboxOptions, randomId } from "../src/queue.js";
import { MemoryStorage } from "./fakes.js";

const INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6";
const OTHER = "inq_otherInquiry0000000000";
const LOAD = { kind: "onLoad" } as const;
const START = { kind: "onEvent", name: "start", metadata: { inquiryId: INQ } } as const;
const COMPLETE = { kind: "onComplete", inquiryId: INQ, status: "completed", fields: {} } as const;

function outbox(options: Partial<OutboxOptions> = {}): Outbox {
  return new Outbox({
    storage: new MemoryStorage(),
    key: "k",
    limit: 500,
    onDrop: () => {},
    now: () => 1000,
    ...options,
  });
}

describe("session", () => {
  it("is 22 URL-safe random characters", () => {
    expect(randomId()).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(randomId()).not.toBe(randomId());
  });

  it("numbers frames 0, 1, 2 with the session, the clock and the callback", () => {
    const box = outbox();
    const frames = [box.push(LOAD), box.push({ kind: "onReady" }), box.push(LOAD)];
    expect(frames.map((f) => f.seq)).toEqual([0, 1, 2]);
    expect(frames[0]).toEqual({ type: "callback", session: box.sessionId, seq: 0, ts: 1000, callback: LOAD });
  });

  it("continues the same session and numbering after a reload", () => {
    const storage = new MemoryStorage();
    const before = outbox({ storage });
    before.push(LOAD);
    before.push(START);
    const after = outbox({ storage });
    expect(after.sessionId).toBe(before.sessionId);
    expect(after.inquiryId).toBe(INQ);
    expect(after.frames.map((f) => f.seq)).toEqual([0, 1]);
    expect(after.push(LOAD).seq).toBe(2);
  });

  it("starts a new session after a flow ended, but keeps its unacknowledged frames", () => {
    const storage = new MemoryStorage();
    const first = outbox({ storage });
    first.push(COMPLETE);
    const second = outbox({ storage });
    expect(second.sessionId).not.toBe(first.sessionId);
    expect(second.push(LOAD).seq).toBe(0);
    expect(second.frames.map((f) => [f.session, f.seq])).toEqual([
      [first.sessionId, 0],
      [second.sessionId, 0],
    ]);
  });

  it("starts a new session when opened for another inquiry", () => {
    const storage = new MemoryStorage();
    const first = outbox({ storage });
    first.push(START);
    expect(outbox({ storage, inquiryId: INQ }).sessionId).toBe(first.sessionId);
    expect(outbox({ storage, inquiryId: OTHER }).sessionId).not.toBe(first.sessionId);
  });

  it("uses the app's session id, continuing it after a reload", () => {
    const storage = new MemoryStorage();
    outbox({ storage, sessionId: "app-session-1" }).push(LOAD);
    const after = outbox({ storage, sessionId: "app-session-1" });
    expect(after.sessionId).toBe("app-session-1");
    expect(after.push(LOAD).seq).toBe(1);
    expect(() => outbox({ sessionId: "bad id!" })).toThrow(TypeError);
  });

  it("starts afresh from unreadable storage", () => {
    const storage = new MemoryStorage();
    storage.setItem("k", "{not json");
    expect(outbox({ storage }).push(LOAD).seq).toBe(0);
  });

  it("works in memory when storage throws", () => {
    const storage = {
      getItem: () => null,
      removeItem: () => {},
      setItem: () => {
        throw new Error("quota");
      },
    };
    const box = outbox({ storage });
    box.push(LOAD);
    expect(box.frames).toHaveLength(1);
  });
});

describe("inquiry", () => {
  it("is put in every frame after the start event, the start event included", () => {
    const box = outbox();
    const frames = [
      box.push(LOAD),
      box.push(START),
      box.push({ kind: "onEvent", name: "document-upload", metadata: null }),
    ];
    expect(frames.map((f) => f.inquiry)).toEqual([undefined, INQ, INQ]);
    expect("inquiry" in frames[0]!).toBe(false);
  });

  it("comes from the inquiryId option", () => {
    expect(outbox({ inquiryId: INQ }).push(LOAD).inquiry).toBe(INQ);
  });

  it("comes from onCancel", () => {
    const box = outbox();
    expect(box.push({ kind: "onCancel", inquiryId: INQ }).inquiry).toBe(INQ);
  });

  it("of another flow starts a new session", () => {
    const box = outbox();
    box.push(START);
    const first = box.sessionId;
    const frame = box.push({ kind: "onEvent", name: "start", metadata: { inquiryId: OTHER } });
    expect(frame).toMatchObject({ seq: 0, inquiry: OTHER });
    expect(frame.session).not.toBe(first);
  });
});

describe("acknowledgements", () => {
  it("are cumulative per session", () => {
    const storage = new MemoryStorage();
    const box = outbox({ storage });
    for (let i = 0; i < 5; i++) box.push(LOAD);
    expect(box.ack(box.sessionId, 2)).toBe(3);
    expect(box.frames.map((f) => f.seq)).toEqual([3, 4]);
    expect(box.ack(box.sessionId, 1)).toBe(0);
    expect(box.ack("another-session", 10)).toBe(0);
    expect(outbox({ storage }).frames.map((f) => f.seq)).toEqual([3, 4]);
  });
});

describe("the bounded buffer", () => {
  it("drops the oldest frames on overflow, reports them and counts them", () => {
    const onDrop = vi.fn<(frames: CallbackFrame[], reason: string) => void>();
    const box = outbox({ limit: 3, onDrop });
    for (let i = 0; i < 5; i++) box.push(LOAD);
    expect(box.frames.map((f) => f.seq)).toEqual([2, 3, 4]);
    expect(box.dropped).toBe(2);
    expect(onDrop.mock.calls.map(([frames, reason]) => [frames.map((f) => f.seq), reason])).toEqual([
      [[0], "overflow"],
      [[1], "overflow"],
    ]);
  });

  it("survives a failing onDrop hook", () => {
    const box = outbox({
      limit: 1,
      onDrop: () => {
        throw new Error("app bug");
      },
    });
    box.push(LOAD);
    expect(() => box.push(LOAD)).not.toThrow();
    expect(box.dropped).toBe(1);
  });

  it("is persisted bounded", () => {
    const storage = new MemoryStorage();
    const box = outbox({ storage, limit: 2 });
    for (let i = 0; i < 4; i++) box.push(LOAD);
    const saved = JSON.parse(storage.getItem("k")!) as { frames: CallbackFrame[] };
    expect(saved.frames.map((f) => f.seq)).toEqual([2, 3]);
  });
});
