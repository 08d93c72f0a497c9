/**
 * Follow the trusted status of one inquiry over `/v1/subscribe`.
 *
 * The subscription remembers the last version it delivered. After a reconnect (with backoff and
 * a fresh token) it subscribes again with `since: {<inquiry>: <version>}`, so the gateway replays
 * only what was missed (`recovered: true`) or sends a snapshot of the current record
 * (`recovered: false`). Either way each record reaches `onUpdate` once, in version order: records
 * of a snapshot are sorted, and any version not above the last delivered one is skipped.
 *
 * @module
 */

import { Connection, type Backoff, type ConnectionStatus, type SocketFactory, type TokenSource } from "./connection.js";
import { type ErrorFrame, INQUIRY_ID, type StatusRecord } from "./frames.js";

/** Options of {@link subscribeStatus}. */
export interface SubscribeOptions {
  /** The gateway's subscription endpoint, e.g. `wss://stream.example.com/v1/subscribe`. */
  url: string;
  /** A `subscribe` token (its `sub` is the end user, or its `inq` this inquiry), or a function returning one. */
  token: TokenSource;
  /** The inquiry to follow. */
  inquiryId: string;
  /** Called with each trusted status record, once, in version order. */
  onUpdate: (record: StatusRecord) => void;
  /** Called when the gateway refuses the subscription (it is retried after a backoff). */
  onError?: (error: ErrorFrame) => void;
  /** Called when the connection changes state. */
  onStatus?: (status: ConnectionStatus) => void;
  /** The last version the caller already has; older and equal versions are not delivered. */
  since?: number;
  /** Reconnection delays (default 250 ms doubling up to 30 s, with full jitter). */
  backoff?: Backoff;
  /** The WebSocket class (default: the global `WebSocket`). */
  WebSocketImpl?: SocketFactory;
}

/** A running subscription. */
export interface Subscription {
  /** The last version delivered (0 before the first). */
  readonly version: number;
  /** Unsubscribe and close the connection. */
  close(): void;
}

const ID = "status";

/**
 * Subscribe to `inquiry:<inquiryId>` and deliver its trusted status records.
 *
 * @example
 * ```ts
 * const subscription = subscribeStatus({
 *   url: "wss://stream.example.com/v1/subscribe", token: fetchSubscribeToken, inquiryId,
 *   onUpdate: (record) => show(record.status),
 * });
 * ```
 */
export function subscribeStatus(options: SubscribeOptions): Subscription {
  const { inquiryId } = options;
  if (!INQUIRY_ID.test(inquiryId)) throw new TypeError(`invalid inquiryId: ${inquiryId}`);
  const channel = `inquiry:${inquiryId}`;
  let last = options.since ?? 0;

  const deliver = (records: unknown[]): void => {
    const mine = records
      .filter((r): r is StatusRecord => isRecord(r) && r.inquiry_id === inquiryId)
      .sort((a, b) => a.version - b.version);
    for (const record of mine) {
      if (record.version <= last) continue;
      last = record.version;
      try {
        options.onUpdate(record);
      } catch {
        // the app's failure must not stop the stream
      }
    }
  };

  const connection: Connection = new Connection({
    url: options.url,
    token: options.token,
    backoff: options.backoff,
    WebSocketImpl: options.WebSocketImpl,
    onStatus: options.onStatus,
    wanted: () => true,
    onReady: () => {
      const since = last > 0 ? { since: { [inquiryId]: last } } : {};
      connection.send({ type: "subscribe", id: ID, channel, ...since });
    },
    onFrame: (frame) => {
      if (!("id" in frame) || frame.id !== ID) return;
      if (frame.type === "subscribed") {
        connection.healthy();
        deliver(frame.snapshot ?? []);
      } else if (frame.type === "update") {
        deliver([frame.data]);
      } else if (frame.type === "error") {
        try {
          options.onError?.(frame);
        } catch {
          // as above
        }
        connection.recycle(frame.code);
      }
    },
  });
  connection.open();

  return {
    get version() {
      return last;
    },
    close() {
      connection.send({ type: "unsubscribe", id: ID });
      connection.close();
    },
  };
}

function isRecord(value: unknown): value is StatusRecord {
  return typeof value === "object" && value !== null && Number.isInteger((value as StatusRecord).version);
}
