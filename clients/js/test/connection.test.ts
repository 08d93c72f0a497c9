import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Connection, type ConnectionOptions, type ConnectionStatus } from "../src/connection.js";
import { FakeSocket } from "./fakes.js";

let statuses: ConnectionStatus[];

function connect(options: Partial<ConnectionOptions> = {}): Connection {
  const connection = new Connection({
    url: "ws://gateway.test/v1/client",
    token: "tok",
    WebSocketImpl: FakeSocket,
    wanted: () => true,
    onReady: () => {},
    onFrame: () => {},
    onStatus: (s) => statuses.push(s),
    random: () => 1,
    ...options,
  });
  connection.open();
  return connection;
}

function delays(): number[] {
  return statuses.flatMap((s) => (s.state === "retrying" ? [s.delay] : []));
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
  statuses = [];
});

afterEach(() => {
  vi.useRealTimers();
});

describe("backoff", () => {
  it("doubles from initialDelay up to maxDelay", async () => {
    connect({ backoff: { initialDelay: 250, maxDelay: 2000 } });
    for (let i = 0; i < 6; i++) {
      FakeSocket.last.drop(1006);
      await vi.advanceTimersByTimeAsync(2000);
    }
    expect(delays()).toEqual([250, 500, 1000, 2000, 2000, 2000]);
  });

  it("defaults to 250 ms .. 30 s", async () => {
    connect();
    for (let i = 0; i < 9; i++) {
      FakeSocket.last.drop(1013, "kafka-unavailable");
      await vi.advanceTimersByTimeAsync(30_000);
    }
    expect(delays()).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  });

  it("uses full jitter", async () => {
    connect({ random: () => 0.5 });
    FakeSocket.last.drop(1006);
    expect(delays()).toEqual([125]);
  });

  it("starts over once the owner saw progress", async () => {
    const connection = connect();
    FakeSocket.last.drop(1006);
    await vi.advanceTimersByTimeAsync(250);
    FakeSocket.last.accept();
    connection.healthy();
    FakeSocket.last.drop(1001, "shutdown");
    expect(delays()).toEqual([250, 250]);
  });

  it("retries when the token cannot be had", async () => {
    const token = vi.fn().mockRejectedValueOnce(new Error("backend down")).mockResolvedValueOnce("tok");
    connect({ token });
    await vi.advanceTimersByTimeAsync(0);
    expect(statuses[1]).toMatchObject({ state: "retrying", delay: 250, error: new Error("backend down") });
    await vi.advanceTimersByTimeAsync(250);
    expect(FakeSocket.all).toHaveLength(1);
  });
});

describe("the socket", () => {
  it("sends auth first and reports ready", () => {
    const onReady = vi.fn();
    const connection = connect({ onReady });
    expect(connection.send({ type: "x" })).toBe(false);
    FakeSocket.last.accept();
    expect(FakeSocket.last.sent).toEqual([{ type: "auth", token: "tok" }]);
    expect(onReady).toHaveBeenCalledOnce();
    expect(connection.ready).toBe(true);
    expect(connection.send({ type: "x" })).toBe(true);
  });

  it("opens one socket at a time", async () => {
    const connection = connect({ token: async () => "tok" });
    connection.open();
    connection.open();
    await vi.advanceTimersByTimeAsync(0);
    connection.open();
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("replaces a socket that never gets ready", async () => {
    connect({ backoff: { maxDelay: 100 } });
    const first = FakeSocket.last;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(first.closedWith?.reason).toBe("stalled");
    await vi.advanceTimersByTimeAsync(100);
    expect(FakeSocket.all).toHaveLength(2);
  });

  it("keeps a ready socket that is not expecting anything", async () => {
    connect();
    FakeSocket.last.accept();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(FakeSocket.all).toHaveLength(1);
    expect(FakeSocket.last.closedWith).toBeUndefined();
  });

  it("reads nothing more from a recycled socket", () => {
    const onFrame = vi.fn();
    const connection = connect({ onFrame });
    const socket = FakeSocket.last;
    socket.accept();
    connection.recycle("rate-limited");
    socket.reply({ type: "ack", session: "s", seq: 1 });
    expect(onFrame).not.toHaveBeenCalled();
    expect(socket.closedWith).toEqual({ code: 4000, reason: "rate-limited" });
  });
});

describe("token refresh", () => {
  const NOW = 1_800_000_000_000;

  function acceptExpiring(socket: FakeSocket, expiresAt: number): void {
    socket.readyState = 1;
    socket.onopen?.({});
    socket.reply({
      type: "ready",
      protocol: 1,
      connection: "c1",
      subject: "u",
      scope: "ingest",
      limits: {},
      expires_at: expiresAt,
    });
  }

  it("asks token() again before expiry and sends a refresh frame", async () => {
    vi.setSystemTime(NOW);
    let n = 0;
    const token = vi.fn(async () => `tok-${n++}`);
    connect({ token });
    await vi.advanceTimersByTimeAsync(0);
    acceptExpiring(FakeSocket.last, NOW / 1000 + 600);
    await vi.advanceTimersByTimeAsync(569_000);
    expect(FakeSocket.last.sentOf("refresh")).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000); // 30 s before expiry
    expect(FakeSocket.last.sentOf("refresh")).toEqual([{ type: "refresh", token: "tok-1" }]);
    FakeSocket.last.reply({ type: "refreshed", expires_at: NOW / 1000 + 1200 });
    expect(statuses[statuses.length - 1]).toEqual({ state: "refreshed", expiresAt: NOW / 1000 + 1200 });
    await vi.advanceTimersByTimeAsync(600_000); // the next refresh follows the new expiry
    expect(FakeSocket.last.sentOf("refresh").map((f) => f.token)).toEqual(["tok-1", "tok-2"]);
    expect(FakeSocket.all).toHaveLength(1); // one socket all along
  });

  it("refreshes a short-lived token after four fifths of its life", async () => {
    vi.setSystemTime(NOW);
    connect({ token: async () => "fresh" });
    await vi.advanceTimersByTimeAsync(0);
    acceptExpiring(FakeSocket.last, NOW / 1000 + 10);
    await vi.advanceTimersByTimeAsync(7_900);
    expect(FakeSocket.last.sentOf("refresh")).toEqual([]);
    await vi.advanceTimersByTimeAsync(200);
    expect(FakeSocket.last.sentOf("refresh")).toHaveLength(1);
  });

  it("reports a refused refresh without passing it on, and reconnects with a new token at the 4001 close", async () => {
    vi.setSystemTime(NOW);
    const frames: unknown[] = [];
    const token = vi.fn(async () => "tok");
    connect({ token, onFrame: (f) => frames.push(f) });
    await vi.advanceTimersByTimeAsync(0);
    acceptExpiring(FakeSocket.last, NOW / 1000 + 10);
    await vi.advanceTimersByTimeAsync(8_000);
    FakeSocket.last.reply({ type: "error", code: "token-mismatch", message: "no" });
    expect(statuses[statuses.length - 1]).toEqual({ state: "refresh-refused", code: "token-mismatch" });
    expect(frames).toEqual([]);
    FakeSocket.last.drop(4001, "token-expired");
    await vi.advanceTimersByTimeAsync(250);
    expect(FakeSocket.all).toHaveLength(2);
    expect(token).toHaveBeenCalledTimes(3); // the first auth, the refresh, the reconnect
  });

  it("never refreshes a fixed token", async () => {
    vi.setSystemTime(NOW);
    connect({ token: "fixed" });
    acceptExpiring(FakeSocket.last, NOW / 1000 + 10);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(FakeSocket.last.sentOf("refresh")).toEqual([]);
  });
});
