/**
 * One authenticated, reconnecting websocket to the gateway, shared by the bridge (`/v1/client`)
 * and the status subscription (`/v1/subscribe`).
 *
 * Each attempt: get a token (a function is called again every time, so a short-lived token is
 * fresh, including after a `1008 token-*` close), open the socket, send `auth` first, wait for
 * `ready`. After a close or a failure, if the owner still {@link ConnectionOptions.wanted | wants}
 * a connection, the next attempt waits an exponential backoff with full jitter:
 * `random() * min(maxDelay, initialDelay * 2^(failures - 1))`. {@link Connection.healthy} resets it
 * once the owner sees progress (an ack, a subscription confirmed).
 *
 * Tokens expire on open connections too: `ready` (and `refreshed`) carry the token's `expires_at`,
 * and the gateway closes at that moment with `4001 token-expired`. So when the token is a function,
 * the connection asks it for a new token {@link REFRESH_LEAD} before expiry (or after four fifths of
 * a shorter lifetime) and sends a `refresh` frame; a refused refresh is reported (`onStatus`) and the
 * connection simply reconnects, with a new token, when the gateway closes it.
 *
 * A socket can die without a close event for minutes (a network that vanished). So a socket that
 * is not `ready` within {@link STALL_TIMEOUT}, or that leaves an {@link Connection.expect | expected}
 * answer (an ack) unanswered that long, is dropped and replaced.
 *
 * @module
 */

import { parseServerFrame, type ReadyFrame, type ServerFrame } from "./frames.js";

/** A token, or a function that returns one (called before every connection attempt). */
export type TokenSource = string | (() => string | Promise<string>);

/** The reconnection delays, in milliseconds. */
export interface Backoff {
  /** The first retry waits up to this long (default 250). */
  initialDelay?: number;
  /** No retry waits longer than this (default 30000). */
  maxDelay?: number;
}

/** Where the connection stands, for an `onStatus` hook. */
export type ConnectionStatus =
  | { state: "connecting"; attempt: number }
  | { state: "ready"; connection: string }
  | { state: "refreshed"; expiresAt: number }
  | { state: "refresh-refused"; code: string }
  | { state: "retrying"; delay: number; code?: number; reason?: string; error?: unknown }
  | { state: "idle"; code?: number; reason?: string }
  | { state: "closed" };

/** The part of the `WebSocket` API used here (so a test or Node can inject its own). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = new (url: string) => SocketLike;

export interface ConnectionOptions {
  url: string;
  token: TokenSource;
  backoff?: Backoff;
  /** The WebSocket class; defaults to the global one. */
  WebSocketImpl?: SocketFactory;
  /** Whether to (re)connect now: asked after every close. */
  wanted: () => boolean;
  onReady: (frame: ReadyFrame) => void;
  onFrame: (frame: ServerFrame) => void;
  onStatus?: (status: ConnectionStatus) => void;
  /** Source of jitter in [0, 1); defaults to Math.random. */
  random?: () => number;
}

const OPEN = 1;

/** How long an awaited answer (`ready`, an ack) may take before the socket is replaced, in ms. */
export const STALL_TIMEOUT = 30_000;

/** How long before its token expires an open connection refreshes it, in ms (at most). */
export const REFRESH_LEAD = 30_000;

export class Connection {
  private socket: SocketLike | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshing = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stall: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private attempts = 0;
  private isReady = false;
  private stopped = false;

  constructor(private readonly options: ConnectionOptions) {}

  /** Whether `auth` was answered with `ready` on the current socket. */
  get ready(): boolean {
    return this.isReady;
  }

  /** Connect now unless a socket is open or being opened, or a retry is already scheduled. */
  open(): void {
    if (this.stopped || this.socket !== undefined || this.timer !== undefined) return;
    void this.attempt();
  }

  /** Send one frame if the connection is ready; returns whether it was sent. */
  send(frame: object): boolean {
    if (!this.isReady || this.socket?.readyState !== OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** The owner saw progress: the next failure starts the backoff from the beginning. */
  healthy(): void {
    this.failures = 0;
    this.settle();
  }

  /** The owner awaits an answer: replace the socket if none comes (no progress) in time. */
  expect(): void {
    this.stall ??= setTimeout(() => {
      this.stall = undefined;
      this.recycle("stalled");
    }, STALL_TIMEOUT);
  }

  /** Drop the current socket (nothing more is read from it) and reconnect after a backoff. */
  recycle(reason: string): void {
    const socket = this.socket;
    if (socket === undefined || socket === PENDING) return;
    this.detach(socket);
    socket.close(4000, reason);
    this.closed(4000, reason);
  }

  /** Close for good: no more attempts. */
  close(): void {
    this.stopped = true;
    this.settle();
    this.stopRefresh();
    clearTimeout(this.timer);
    this.timer = undefined;
    const socket = this.socket;
    if (socket !== undefined) {
      this.detach(socket);
      socket.close(1000, "client-closed");
    }
    this.status({ state: "closed" });
  }

  private async attempt(): Promise<void> {
    this.timer = undefined;
    this.status({ state: "connecting", attempt: ++this.attempts });
    const Impl = this.options.WebSocketImpl ?? (globalThis.WebSocket as unknown as SocketFactory | undefined);
    let socket: SocketLike;
    // a placeholder so open() does not start a second attempt while the token is fetched
    this.socket = PENDING;
    try {
      const { token } = this.options;
      const value = typeof token === "function" ? await token() : token;
      if (this.stopped || this.socket !== PENDING) return;
      if (Impl === undefined) throw new Error("no WebSocket implementation");
      socket = new Impl(this.options.url);
      this.socket = socket;
      this.expect(); // the ready frame
      socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: value }));
    } catch (error) {
      if (this.stopped) return;
      this.socket = undefined;
      this.retry({ error });
      return;
    }
    socket.onmessage = (event) => {
      const frame = parseServerFrame(event.data);
      if (frame === undefined || this.socket !== socket) return;
      if (frame.type === "ready" && !this.isReady) {
        this.isReady = true;
        this.settle();
        this.status({ state: "ready", connection: frame.connection });
        this.scheduleRefresh(socket, frame.expires_at);
        this.options.onReady(frame);
      } else if (frame.type === "refreshed") {
        this.refreshing = false;
        this.status({ state: "refreshed", expiresAt: frame.expires_at });
        this.scheduleRefresh(socket, frame.expires_at);
      } else if (frame.type === "error" && this.refreshing && frame.code.startsWith("token-")) {
        // the new token was refused: the old one stands until the gateway closes (4001), then a reconnect
        this.refreshing = false;
        this.status({ state: "refresh-refused", code: frame.code });
      } else {
        this.options.onFrame(frame);
      }
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.closed(event.code, event.reason);
    };
    socket.onerror = () => {
      // a close event follows
    };
  }

  private detach(socket: SocketLike): void {
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    this.stopRefresh();
  }

  /** Ask for a new token before `expiresAt` (seconds since the epoch) and send it on `socket`. */
  private scheduleRefresh(socket: SocketLike, expiresAt: number | null | undefined): void {
    this.stopRefresh();
    const { token } = this.options;
    if (typeof token !== "function" || typeof expiresAt !== "number") return; // a fixed token cannot be renewed
    const remaining = expiresAt * 1000 - Date.now();
    const delay = Math.max(0, remaining - Math.min(REFRESH_LEAD, remaining / 5));
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void (async () => {
        let value: string;
        try {
          value = await token();
        } catch {
          this.status({ state: "refresh-refused", code: "token-unavailable" });
          return;
        }
        if (this.socket !== socket || !this.send({ type: "refresh", token: value })) return;
        this.refreshing = true;
      })();
    }, delay);
  }

  private stopRefresh(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    this.refreshing = false;
  }

  private settle(): void {
    clearTimeout(this.stall);
    this.stall = undefined;
  }

  private closed(code: number, reason: string): void {
    this.settle();
    this.stopRefresh();
    this.socket = undefined;
    this.isReady = false;
    if (this.stopped) return;
    if (this.options.wanted()) this.retry({ code, reason });
    else this.status({ state: "idle", code, reason });
  }

  private retry(cause: { code?: number; reason?: string; error?: unknown }): void {
    if (this.stopped) return;
    const { initialDelay = 250, maxDelay = 30_000 } = this.options.backoff ?? {};
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** this.failures++);
    const delay = Math.round((this.options.random ?? Math.random)() * ceiling);
    this.status({ state: "retrying", delay, ...cause });
    this.timer = setTimeout(() => void this.attempt(), delay);
  }

  private status(status: ConnectionStatus): void {
    try {
      this.options.onStatus?.(status);
    } catch {
      // a failing hook must not break the connection
    }
  }
}

const PENDING: SocketLike = {
  readyState: 0,
  onopen: null,
  onmessage: null,
  onclose: null,
  onerror: null,
  send() {},
  close() {},
};
