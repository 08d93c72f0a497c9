/**
 * The outbox: the current session (id, next seq, inquiry) and the bounded buffer of frames the
 * gateway has not acknowledged yet, mirrored into a `Storage` (sessionStorage by default) so a
 * page reload continues the same session and numbering and resends what was not acknowledged.
 *
 * No I/O besides the storage: the connection reads {@link Outbox.frames} and reports acks.
 *
 * Session rules:
 * - a session is one flow: 8–64 URL-safe random characters, `seq` 0, 1, 2, … never reused;
 * - it knows at most one inquiry: a callback revealing a different inquiry starts a new session;
 * - a session that ended (`onComplete` or `onCancel`) is not continued by the next bridge created
 *   in this tab (a new flow), but its unacknowledged frames are still sent.
 *
 * @module
 */

import { type Callback, type CallbackFrame, inquiryOf, SESSION_ID } from "./frames.js";

/** The subset of the Web Storage API the outbox needs. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Why frames were dropped without being acknowledged. */
export type DropReason = "overflow" | "too-large";

export interface OutboxOptions {
  /** Where to persist; `null` keeps everything in memory only. */
  storage: StorageLike | null;
  /** The storage key. */
  key: string;
  /** At most this many unacknowledged frames are kept; the oldest are dropped first. */
  limit: number;
  /** A session id chosen by the app; otherwise the stored one, or a random one. */
  sessionId?: string;
  /** The inquiry the flow was opened with. */
  inquiryId?: string;
  /** Called with the frames that are dropped (never silently). */
  onDrop: (frames: CallbackFrame[], reason: DropReason) => void;
  /** The clock, in milliseconds since the epoch. */
  now?: () => number;
}

interface Session {
  id: string;
  next: number;
  inquiry?: string;
  ended?: boolean;
}

interface Saved {
  v: 1;
  session: Session;
  frames: CallbackFrame[];
}

export class Outbox {
  /** Unacknowledged frames, in the order they were made (so in `seq` order per session). */
  frames: CallbackFrame[] = [];
  /** How many frames were dropped unacknowledged since this outbox was created. */
  dropped = 0;
  private session: Session;

  constructor(private readonly options: OutboxOptions) {
    const saved = load(options.storage, options.key);
    this.frames = saved?.frames ?? [];
    const previous = saved?.session;
    const wanted = options.sessionId;
    if (wanted !== undefined && !SESSION_ID.test(wanted)) throw new TypeError(`invalid sessionId: ${wanted}`);
    const continues =
      previous !== undefined &&
      (wanted !== undefined
        ? previous.id === wanted
        : !previous.ended && (options.inquiryId === undefined || options.inquiryId === previous.inquiry));
    this.session = continues ? previous : { id: wanted ?? randomId(), next: 0 };
    if (options.inquiryId !== undefined && this.session.inquiry === undefined) this.session.inquiry = options.inquiryId;
    this.save();
  }

  /** The current session's id. */
  get sessionId(): string {
    return this.session.id;
  }

  /** The inquiry the current session knows, if any. */
  get inquiryId(): string | undefined {
    return this.session.inquiry;
  }

  /** Number a callback in the current session, buffer and persist it, and return its frame. */
  push(callback: Callback): CallbackFrame {
    const revealed = inquiryOf(callback);
    if (revealed !== undefined) this.learn(revealed);
    if (callback.kind === "onComplete" || callback.kind === "onCancel") this.session.ended = true;
    const frame: CallbackFrame = {
      type: "callback",
      session: this.session.id,
      seq: this.session.next++,
      ts: (this.options.now ?? Date.now)(),
      callback,
    };
    if (this.session.inquiry !== undefined) frame.inquiry = this.session.inquiry;
    this.frames.push(frame);
    if (this.frames.length > this.options.limit) {
      this.drop(this.frames.splice(0, this.frames.length - this.options.limit), "overflow");
    }
    this.save();
    return frame;
  }

  /** The flow's inquiry is `inquiryId`; a session that knew another one gives way to a new session. */
  learn(inquiryId: string): void {
    if (this.session.inquiry === inquiryId) return;
    if (this.session.inquiry !== undefined) this.session = { id: randomId(), next: 0 }; // another flow
    this.session.inquiry = inquiryId;
    this.save();
  }

  /** A cumulative ack: forget the frames of `session` up to `seq`; returns how many. */
  ack(session: string, seq: number): number {
    const before = this.frames.length;
    this.frames = this.frames.filter((f) => f.session !== session || f.seq > seq);
    if (this.frames.length !== before) this.save();
    return before - this.frames.length;
  }

  /** Forget one frame (refused by the gateway, or dropped); returns it if it was there. */
  remove(session: string, seq: number): CallbackFrame | undefined {
    const index = this.frames.findIndex((f) => f.session === session && f.seq === seq);
    if (index < 0) return undefined;
    const [frame] = this.frames.splice(index, 1);
    this.save();
    return frame;
  }

  /** Forget frames that can never be sent, and report them. */
  drop(frames: CallbackFrame[], reason: DropReason): void {
    if (frames.length === 0) return;
    const gone = new Set(frames);
    this.frames = this.frames.filter((f) => !gone.has(f));
    this.dropped += frames.length;
    this.save();
    try {
      this.options.onDrop(frames, reason);
    } catch {
      // a failing hook must not break the bridge
    }
  }

  private save(): void {
    const saved: Saved = { v: 1, session: this.session, frames: this.frames };
    try {
      this.options.storage?.setItem(this.options.key, JSON.stringify(saved));
    } catch {
      // storage full or forbidden: the frames are still kept in memory
    }
  }
}

function load(storage: StorageLike | null, key: string): Saved | undefined {
  try {
    const saved = JSON.parse(storage?.getItem(key) ?? "null") as Saved | null;
    if (saved?.v === 1 && SESSION_ID.test(saved.session?.id) && Array.isArray(saved.frames)) return saved;
  } catch {
    // unreadable: start afresh
  }
  return undefined;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** 22 random URL-safe characters (132 bits). */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(22));
  let id = "";
  for (const byte of bytes) id += ALPHABET[byte & 63];
  return id;
}
