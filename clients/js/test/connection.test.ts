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
