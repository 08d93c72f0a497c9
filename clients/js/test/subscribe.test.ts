import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { StatusRecord } from "../src/frames.js";
import { subscribeStatus, type SubscribeOptions } from "../src/subscribe.js";
import { FakeSocket } from "./fakes.js";

const INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6";
const CHANNEL = `inquiry:${INQ}`;

function record(version: number, status: string, inquiry = INQ): StatusRecord {
  return { inquiry_id: inquiry, version, status, previous_status: null };
}

let seen: [number, string | null][];

function subscribe(options: Partial<SubscribeOptions> = {}) {
  return subscribeStatus({
    url: "ws://gateway.test/v1/subscribe",
    token: "sub-token",
    inquiryId: INQ,
    onUpdate: (r) => seen.push([r.version, r.status]),
    WebSocketImpl: FakeSocket,
    backoff: { maxDelay: 1000 },
    ...options,
  });
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
  seen = [];
});

afterEach(() => {
  vi.useRealTimers();
});

describe("subscribeStatus", () => {
  it("subscribes to the inquiry's channel after auth, without since at first", () => {
    subscribe();
    FakeSocket.last.accept();
    expect(FakeSocket.last.sent).toEqual([
      { type: "auth", token: "sub-token" },
      { type: "subscribe", id: "status", channel: CHANNEL },
    ]);
  });

  it("delivers a snapshot in version order, then updates, each once", () => {
    subscribe();
    const socket = FakeSocket.last;
    socket.accept();
    socket.reply({
      type: "subscribed",
      id: "status",
      channel: CHANNEL,
      recovered: false,
      snapshot: [record(2, "pending"), record(1, "created")],
    });
    socket.reply({ type: "update", id: "status", channel: CHANNEL, data: record(2, "pending") });
    socket.reply({ type: "update", id: "status", channel: CHANNEL, data: record(3, "completed") });
    socket.reply({ type: "update", id: "status", channel: CHANNEL, data: record(1, "created") });
    socket.reply({ type: "update", id: "other", channel: CHANNEL, data: record(9, "approved") });
    socket.reply({ type: "update", id: "status", channel: CHANNEL, data: record(9, "approved", "inq_another") });
    expect(seen).toEqual([
      [1, "created"],
      [2, "pending"],
      [3, "completed"],
    ]);
  });

  it("resumes with since after a reconnect and drops what it already delivered", async () => {
    const token = vi.fn(async () => `token-${token.mock.calls.length}`);
    const subscription = subscribe({ token });
    await vi.advanceTimersByTimeAsync(0);
    const first = FakeSocket.last;
    first.accept();
    first.reply({ type: "subscribed", id: "status", channel: CHANNEL, recovered: true, snapshot: [] });
    first.reply({ type: "update", id: "status", channel: CHANNEL, data: record(1, "created") });
    first.reply({ type: "update", id: "status", channel: CHANNEL, data: record(2, "pending") });
    first.drop(1013, "slow-consumer");
    await vi.advanceTimersByTimeAsync(1000);
    const second = FakeSocket.last;
    expect(second).not.toBe(first);
    second.accept();
    expect(second.sent).toEqual([
      { type: "auth", token: "token-2" },
      { type: "subscribe", id: "status", channel: CHANNEL, since: { [INQ]: 2 } },
    ]);
    second.reply({
      type: "subscribed",
      id: "status",
      channel: CHANNEL,
      recovered: false,
      snapshot: [record(2, "pending")],
    });
    second.reply({ type: "update", id: "status", channel: CHANNEL, data: record(3, "completed") });
    expect(seen).toEqual([
      [1, "created"],
      [2, "pending"],
      [3, "completed"],
    ]);
    expect(subscription.version).toBe(3);
  });

  it("starts from the caller's since", () => {
    subscribe({ since: 4 });
    FakeSocket.last.accept();
    expect(FakeSocket.last.sent[1]).toMatchObject({ since: { [INQ]: 4 } });
    FakeSocket.last.reply({ type: "update", id: "status", channel: CHANNEL, data: record(4, "completed") });
    FakeSocket.last.reply({ type: "update", id: "status", channel: CHANNEL, data: record(5, "approved") });
    expect(seen).toEqual([[5, "approved"]]);
  });

  it("reports a refused subscription and tries again later", async () => {
    const onError = vi.fn();
    subscribe({ onError });
    FakeSocket.last.accept();
    FakeSocket.last.reply({ type: "error", id: "status", code: "channel-forbidden", message: "no", retriable: false });
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: "channel-forbidden" }));
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.all).toHaveLength(2);
  });

  it("survives a failing onUpdate", () => {
    subscribe({
      onUpdate: () => {
        throw new Error("app bug");
      },
    });
    FakeSocket.last.accept();
    expect(() =>
      FakeSocket.last.reply({ type: "update", id: "status", channel: CHANNEL, data: record(1, "created") }),
    ).not.toThrow();
  });

  it("refuses an invalid inquiry id at once", () => {
    expect(() => subscribe({ inquiryId: "not-an-inquiry" })).toThrow(TypeError);
    expect(FakeSocket.all).toHaveLength(0);
  });

  it("unsubscribes and closes for good", async () => {
    const subscription = subscribe();
    const socket = FakeSocket.last;
    socket.accept();
    subscription.close();
    expect(socket.sent[socket.sent.length - 1]).toEqual({ type: "unsubscribe", id: "status" });
    expect(socket.closedWith?.code).toBe(1000);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});
