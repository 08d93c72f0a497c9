/**
 * The wire vocabulary of persona-stream protocol 1 (docs/protocol.md) and the pure mapping from
 * the Persona SDK's callback arguments to `callback` documents.
 *
 * Redaction happens here, before anything is buffered, persisted or sent:
 * - `onCancel`'s `sessionToken` (it can resume the inquiry) is dropped unless `sendSessionToken`;
 * - `onComplete`'s field values (personal data) become names and types only unless
 *   `sendFieldValues`: `{name: {type}}`, or `{name: null}` for a legacy string field.
 * The same two rules apply to the metadata of `onEvent`, because the SDK also hands the
 * `complete`, `fail` and `exit` messages' metadata (fields, session token) to `onEvent`.
 *
 * @module
 */

/** What the protocol accepts as an inquiry id; anything else is never put in `inquiry`. */
export const INQUIRY_ID = /^inq_[A-Za-z0-9_-]{1,100}$/;

/** What the protocol accepts as a session id. */
export const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;

/** A JSON object. */
export type JsonObject = { [key: string]: unknown };

/** One SDK callback as the gateway receives it: `kind` plus exactly the SDK's argument. */
export type Callback =
  | { kind: "onLoad" }
  | { kind: "onReady" }
  | { kind: "onEvent"; name: string; metadata: JsonObject | null }
  | { kind: "onComplete"; inquiryId: string; status: string; fields: JsonObject }
  | { kind: "onCancel"; inquiryId?: string; sessionToken?: string }
  | { kind: "onError"; status: number; code: string; message?: string };

/** A `callback` frame; `(session, seq)` is its identity. */
export interface CallbackFrame {
  type: "callback";
  session: string;
  seq: number;
  ts: number;
  inquiry?: string;
  callback: Callback;
}

/** The gateway's `ready` answer to `auth`. */
export interface ReadyFrame {
  type: "ready";
  protocol: number;
  connection: string;
  subject: string;
  scope: string;
  limits: { [name: string]: number };
  /** When the token expires, seconds since the epoch: the connection refreshes it before then. */
  expires_at?: number | null;
}

/** The answer to a `refresh` frame: the connection now expires at `expires_at`. */
export interface RefreshedFrame {
  type: "refreshed";
  expires_at: number;
}

/** A cumulative acknowledgement: every frame of `session` up to `seq` sent on this connection is done. */
export interface AckFrame {
  type: "ack";
  session: string;
  seq: number;
}

/** A refused frame or subscription request (docs/protocol.md lists the codes). */
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  seq?: number | null;
  session?: string | null;
  field?: string | null;
  id?: string | null;
  retriable?: boolean;
}

/** The answer to `subscribe`. */
export interface SubscribedFrame {
  type: "subscribed";
  id: string;
  channel: string;
  recovered: boolean;
  snapshot?: StatusRecord[];
}

/** One trusted status change, delivered on `/v1/subscribe`. */
export interface UpdateFrame {
  type: "update";
  id: string;
  channel: string;
  data: StatusRecord;
}

/**
 * A status record (docs/schemas/status-record.schema.json): one change of what it carries (the
 * trusted status or any flag; `changed` says what). Only the fields used here are typed.
 */
export interface StatusRecord {
  inquiry_id: string;
  version: number;
  status: string | null;
  previous_status: string | null;
  changed?: string[];
  [key: string]: unknown;
}

export type ServerFrame = ReadyFrame | RefreshedFrame | AckFrame | ErrorFrame | SubscribedFrame | UpdateFrame;

/** The two redaction switches; both off by default. */
export interface Redaction {
  sendSessionToken: boolean;
  sendFieldValues: boolean;
}

/** Parse one server message; `undefined` for anything that is not a JSON object with a string `type`. */
export function parseServerFrame(data: unknown): ServerFrame | undefined {
  if (typeof data !== "string") return undefined;
  try {
    const frame: unknown = JSON.parse(data);
    return isObject(frame) && typeof frame.type === "string" ? (frame as unknown as ServerFrame) : undefined;
  } catch {
    return undefined;
  }
}

/** `onEvent(name, metadata)` as a callback document. */
export function eventCallback(name: unknown, metadata: unknown, redaction: Redaction): Callback {
  return {
    kind: "onEvent",
    name: text(name, 200) || "unknown",
    metadata: isObject(metadata) ? redactMetadata(metadata, redaction) : null,
  };
}

/** `onComplete({inquiryId, status, fields})` as a callback document. */
export function completeCallback(argument: unknown, redaction: Redaction): Callback {
  const { inquiryId, status, fields } = isObject(argument) ? argument : {};
  return {
    kind: "onComplete",
    inquiryId: String(inquiryId),
    status: String(status),
    fields: isObject(fields) ? redactFields(fields, redaction) : {},
  };
}

/** `onCancel({inquiryId?, sessionToken?})` as a callback document. */
export function cancelCallback(argument: unknown, redaction: Redaction): Callback {
  const { inquiryId, sessionToken } = isObject(argument) ? argument : {};
  const callback: Callback = { kind: "onCancel" };
  if (typeof inquiryId === "string") callback.inquiryId = inquiryId;
  if (redaction.sendSessionToken && typeof sessionToken === "string") callback.sessionToken = sessionToken;
  return callback;
}

/** `onError({status, code, message?})` as a callback document, kept inside the protocol's bounds. */
export function errorCallback(argument: unknown): Callback {
  const { status, code, message } = isObject(argument) ? argument : {};
  const callback: Callback = {
    kind: "onError",
    status: Number.isInteger(status) && (status as number) >= -1 && (status as number) <= 999 ? (status as number) : -1,
    code: text(code, 200) || "unknown",
  };
  if (typeof message === "string") callback.message = message.slice(0, 2000);
  return callback;
}

/** The inquiry id a callback reveals, if it reveals a valid one. */
export function inquiryOf(callback: Callback): string | undefined {
  let id: unknown;
  if (callback.kind === "onComplete" || callback.kind === "onCancel") id = callback.inquiryId;
  else if (callback.kind === "onEvent" && REVEALING_EVENTS.has(callback.name)) id = callback.metadata?.inquiryId;
  return typeof id === "string" && INQUIRY_ID.test(id) ? id : undefined;
}

/** Events whose metadata names the flow's own inquiry (`start` first; the others repeat it). */
const REVEALING_EVENTS = new Set(["start", "complete", "fail", "exit"]);

function redactMetadata(metadata: JsonObject, redaction: Redaction): JsonObject {
  const copy: JsonObject = { ...metadata };
  if (!redaction.sendSessionToken) delete copy.sessionToken;
  for (const key of ["fields", "scopes"]) {
    if (isObject(copy[key])) copy[key] = redactFields(copy[key] as JsonObject, redaction);
  }
  return copy;
}

function redactFields(fields: JsonObject, redaction: Redaction): JsonObject {
  if (redaction.sendFieldValues) return fields;
  const names: JsonObject = {};
  for (const [name, field] of Object.entries(fields)) {
    names[name] = isObject(field) && typeof field.type === "string" ? { type: field.type } : null;
  }
  return names;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function text(value: unknown, limit: number): string {
  return typeof value === "string" ? value.slice(0, limit) : "";
}
