/**
 * The bridge: wraps the callbacks of the Persona SDK's options so that each call is also sent to
 * the persona-stream gateway (`/v1/client`), reliably.
 *
 * The app's own callback is always called, synchronously, with the SDK's arguments and `this`,
 * and its return value (or exception) is passed back unchanged. Before it, the bridge turns the
 * call into a frame and persists it: cheap and synchronous, so a callback that navigates away
 * loses nothing; any failure of the bridge is swallowed so it never reaches the SDK.
 *
 * Delivery: frames wait in the {@link Outbox} until a cumulative `ack` covers them. On every
 * `ready` the unacknowledged frames are sent in order, with their original `seq`; frames made
 * while ready are sent at once. Sending keeps under the rate the gateway announced in `ready`
 * (see {@link TokenBucket}), so a long backlog is not refused as `rate-limited`.
 *
 * Error frames: `retriable: false` drops the frame and reports it to `onRejected`;
 * `retriable: true` (rate-limited) keeps it, drops the connection and resends after a backoff
 * (resending on the same connection could be refused as `seq-repeated`).
 * Frames larger than the gateway's `max_frame_bytes` are dropped (`onDrop`, reason `too-large`)
 * instead of being sent, since the gateway would close the connection (1009) on every attempt.
 *
 * @module
 */

import { Connection, type Backoff, type ConnectionStatus, type SocketFactory, type TokenSource } from "./connection.js";
import {
  type Callback,
  type CallbackFrame,
  type ErrorFrame,
  INQUIRY_ID,
  type ReadyFrame,
  type Redaction,
  type ServerFrame,
  cancelCallback,
  completeCallback,
  errorCallback,
  eventCallback,
} from "./frames.js";
import { TokenBucket } from "./pacing.js";
import { type DropReason, Outbox, type StorageLike } from "./queue.js";

/** Options of a {@link Bridge}. */
export interface BridgeOptions {
  /** The gateway's ingest endpoint, e.g. `wss://stream.example.com/v1/client`. */
  url: string;
  /**
   * An `ingest` token minted by the app's backend, or a function returning one: it is called
   * before every connection attempt, so it can fetch a fresh short-lived token each time.
   */
  token: TokenSource;
  /** A session id of the app's choosing (8–64 of `[A-Za-z0-9_-]`); default: random, kept in storage. */
  sessionId?: string;
  /** The inquiry the flow was opened with (also taken from the SDK options' `inquiryId`). */
  inquiryId?: string;
  /** Send `onCancel`'s `sessionToken` (default false: it can resume the inquiry, so it is stripped). */
  sendSessionToken?: boolean;
  /** Send `onComplete`'s field values (default false: names and types only). */
  sendFieldValues?: boolean;
  /** At most this many unacknowledged frames are kept (default 500); the oldest are dropped first. */
  bufferLimit?: number;
  /** Where the session and the unacknowledged frames are kept (default `sessionStorage`; `null`: memory only). */
  storage?: StorageLike | null;
  /** Prefix of the storage key (default `"persona-stream:"`). */
  storagePrefix?: string;
  /** Called with frames dropped unacknowledged: buffer overflow, or larger than the gateway accepts. */
  onDrop?: (frames: CallbackFrame[], reason: DropReason) => void;
  /** Called when the gateway refuses a frame for good (`frame` is absent if the error names none). */
  onRejected?: (error: ErrorFrame, frame: CallbackFrame | undefined) => void;
  /** Called when the connection changes state. */
  onStatus?: (status: ConnectionStatus) => void;
  /** Reconnection delays (default 250 ms doubling up to 30 s, with full jitter). */
  backoff?: Backoff;
  /** The WebSocket class (default: the global `WebSocket`). */
  WebSocketImpl?: SocketFactory;
}

type AnyCallback = (...args: never[]) => unknown;

/**
 * The options of `new Persona.Client({...})` (and persona-react's `<Inquiry>` props) that the
 * bridge reads: a flow's template or inquiry, and the six callbacks. Typed loosely on purpose, so
 * that every version of the SDK's option types is accepted; other options pass through untouched.
 */
export interface SdkOptions {
  templateId?: string;
  templateVersionId?: string;
  inquiryId?: string;
  onLoad?: AnyCallback;
  onReady?: AnyCallback;
  onEvent?: AnyCallback;
  onComplete?: AnyCallback;
  onCancel?: AnyCallback;
  onError?: AnyCallback;
}

type CallbackName = "onLoad" | "onReady" | "onEvent" | "onComplete" | "onCancel" | "onError";

const DEFAULT_MAX_FRAME_BYTES = 65536;

/**
 * Forwards SDK callbacks to the gateway. Create one per flow and page, then pass
 * `bridge.wrap(options)` to `new Persona.Client(...)`.
 *
 * @example
 * ```ts
 * const stream = new Bridge({ url: "wss://stream.example.com/v1/client", token: fetchIngestToken });
 * const client = new Persona.Client(stream.wrap({ templateId: "itmpl_…", onReady: () => client.open() }));
 * ```
 */
export class Bridge {
  private readonly outbox: Outbox;
  private readonly connection: Connection;
  private readonly redaction: Redaction;
  private maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  /** The frames sent on the current connection. */
  private onWire = new WeakSet<CallbackFrame>();
  private bucket: TokenBucket | undefined;
  private pacing: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: BridgeOptions) {
    if (options.inquiryId !== undefined && !INQUIRY_ID.test(options.inquiryId)) {
      throw new TypeError(`invalid inquiryId: ${options.inquiryId}`);
    }
    this.redaction = {
      sendSessionToken: options.sendSessionToken ?? false,
      sendFieldValues: options.sendFieldValues ?? false,
    };
    this.outbox = new Outbox({
      storage: options.storage === undefined ? defaultStorage() : options.storage,
      key: `${options.storagePrefix ?? "persona-stream:"}bridge`,
      limit: Math.max(1, options.bufferLimit ?? 500),
      sessionId: options.sessionId,
      inquiryId: options.inquiryId,
      onDrop: (frames, reason) => options.onDrop?.(frames, reason),
    });
    this.connection = new Connection({
      url: options.url,
      token: options.token,
      backoff: options.backoff,
      WebSocketImpl: options.WebSocketImpl,
      onStatus: options.onStatus,
      wanted: () => this.outbox.frames.length > 0,
      onReady: (frame) => this.ready(frame),
      onFrame: (frame) => this.received(frame),
    });
    if (this.outbox.frames.length > 0) this.connection.open(); // left over from before a reload
  }

  /** The current session id. */
  get session(): string {
    return this.outbox.sessionId;
  }

  /** The inquiry the session knows, once it knows one. */
  get inquiry(): string | undefined {
    return this.outbox.inquiryId;
  }

  /** How many frames wait for the gateway's acknowledgement. */
  get pending(): number {
    return this.outbox.frames.length;
  }

  /** How many frames were dropped unacknowledged (see `onDrop`). */
  get dropped(): number {
    return this.outbox.dropped;
  }

  /**
   * Return a copy of the SDK options whose six callbacks also feed the gateway. The app's own
   * callbacks are called unchanged and at once, whatever state the connection is in.
   */
  wrap<T extends SdkOptions>(sdkOptions: T): T {
    if (sdkOptions.inquiryId !== undefined && INQUIRY_ID.test(sdkOptions.inquiryId)) {
      this.guard(() => this.outbox.learn(sdkOptions.inquiryId as string));
    }
    const wrapped: SdkOptions = { ...sdkOptions };
    const hook = (name: CallbackName, make: (args: unknown[]) => Callback): void => {
      const own = sdkOptions[name] as ((...args: unknown[]) => unknown) | undefined;
      const record = (args: unknown[]) => this.guard(() => this.record(make(args)));
      wrapped[name] = function (this: unknown, ...args: unknown[]): unknown {
        record(args);
        return own?.apply(this, args);
      };
    };
    hook("onLoad", () => ({ kind: "onLoad" }));
    hook("onReady", () => ({ kind: "onReady" }));
    hook("onEvent", ([name, metadata]) => eventCallback(name, metadata, this.redaction));
    hook("onComplete", ([argument]) => completeCallback(argument, this.redaction));
    hook("onCancel", ([argument]) => cancelCallback(argument, this.redaction));
    hook("onError", ([argument]) => errorCallback(argument));
    return wrapped as T;
  }

  /** Stop sending (unacknowledged frames stay in storage for the next page). */
  close(): void {
    clearTimeout(this.pacing);
    this.connection.close();
  }

  private record(callback: Callback): void {
    this.outbox.push(callback);
    if (this.connection.ready) this.flush();
    else this.connection.open();
  }

  private ready(frame: ReadyFrame): void {
    const { max_frame_bytes, rate_per_second: rate, rate_burst: burst } = frame.limits ?? {};
    this.maxFrameBytes = max_frame_bytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.bucket = rate > 0 ? new TokenBucket(rate, Math.max(1, burst ?? 1), Date.now()) : undefined;
    this.onWire = new WeakSet();
    this.flush();
  }

  /** Send, in order, the frames not yet sent on this connection, as fast as the gateway allows. */
  private flush(): void {
    clearTimeout(this.pacing);
    this.pacing = undefined;
    for (const frame of [...this.outbox.frames]) {
      if (!this.connection.ready) return;
      if (this.onWire.has(frame)) continue;
      const wait = this.bucket?.take(Date.now()) ?? 0;
      if (wait > 0) {
        this.pacing = setTimeout(() => this.guard(() => this.flush()), wait);
        return;
      }
      this.onWire.add(frame);
      if (byteLength(JSON.stringify(frame)) > this.maxFrameBytes) this.outbox.drop([frame], "too-large");
      else if (this.connection.send(frame)) this.connection.expect(); // its ack
    }
  }

  private received(frame: ServerFrame): void {
    if (frame.type === "ack") {
      if (this.outbox.ack(frame.session, frame.seq) === 0) return;
      this.connection.healthy();
      if (this.outbox.frames.some((f) => this.onWire.has(f))) this.connection.expect(); // more acks due
    } else if (frame.type === "error") {
      this.refused(frame);
    }
  }

  private refused(error: ErrorFrame): void {
    if (error.retriable) {
      // keep the frame; nothing more is read from this connection (not even the ack that covers
      // the refused frame), and everything unacknowledged is resent on the next one
      this.connection.recycle(error.code);
      return;
    }
    const frame = error.session != null && error.seq != null ? this.outbox.remove(error.session, error.seq) : undefined;
    try {
      this.options.onRejected?.(error, frame);
    } catch {
      // a failing hook must not break the bridge
    }
  }

  private guard(action: () => void): void {
    try {
      action();
    } catch {
      // the bridge must never throw into the SDK, whatever goes wrong in it
    }
  }
}

/**
 * Wrap the SDK options with a new {@link Bridge}: `new Persona.Client(bridge({...}, {url, token}))`.
 * Use the {@link Bridge} class directly to read `pending` / `dropped` or to `close()` it.
 */
export function bridge<T extends SdkOptions>(sdkOptions: T, options: BridgeOptions): T {
  return new Bridge(options).wrap(sdkOptions);
}

function defaultStorage(): StorageLike | null {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage disabled (e.g. a sandboxed frame): memory only
  }
}

function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}
