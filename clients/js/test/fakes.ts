/** Test doubles: an in-memory Storage and a WebSocket whose server side the test plays. */

import type { SocketLike } from "../src/connection.js";

export class MemoryStorage {
  readonly items = new Map<string, string>();

  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }

  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/**
 * A fake WebSocket. Every instance is recorded in {@link FakeSocket.all}; the test plays the
 * server with {@link accept}, {@link reply}, {@link drop} and reads what the client sent in
 * {@link sent}.
 */
export class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];

  static reset(): void {
    FakeSocket.all = [];
  }

  /** The most recent socket. */
  static get last(): FakeSocket {
    const socket = FakeSocket.all[FakeSocket.all.length - 1];
    if (socket === undefined) throw new Error("no socket was opened");
    return socket;
  }

  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: Record<string, unknown>[] = [];
  closedWith: { code?: number; reason?: string } | undefined;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** The frames of one type the client sent. */
  sentOf(type: string): Record<string, unknown>[] {
    return this.sent.filter((frame) => frame.type === type);
  }

  /** The server side: open the socket, then answer `auth` with `ready`. */
  accept(limits: Record<string, number> = { max_frame_bytes: 65536 }): void {
    this.readyState = 1;
    this.onopen?.({});
    this.reply({ type: "ready", protocol: 1, connection: "c1", subject: "user-42", scope: "ingest", limits });
  }

  /** The server side: send one frame. */
  reply(frame: object): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The server side: close the connection (or a failed connect, code 1006). */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}
