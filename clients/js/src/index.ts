/**
 * `@persona-stream/bridge`: forward the Persona browser SDK's callbacks to the persona-stream
 * gateway, and follow an inquiry's trusted status.
 *
 * - {@link bridge} / {@link Bridge}: wrap the options of `new Persona.Client({...})`.
 * - {@link subscribeStatus}: trusted status updates of one inquiry.
 *
 * @packageDocumentation
 */

export { Bridge, bridge, type BridgeOptions, type SdkOptions } from "./bridge.js";
export type { Backoff, ConnectionStatus, SocketFactory, SocketLike, TokenSource } from "./connection.js";
export type { Callback, CallbackFrame, ErrorFrame, StatusRecord } from "./frames.js";
export type { DropReason, StorageLike } from "./queue.js";
export { subscribeStatus, type SubscribeOptions, type Subscription } from "./subscribe.js";
