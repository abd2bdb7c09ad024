/**
 * eventwire: Server-Sent Events done properly. A reconnecting, replaying `EventSource` client
 * (Rust compiled to WebAssembly) for an eventwire hub.
 *
 * React hooks live in `eventwire/react`.
 *
 * @packageDocumentation
 */

export { createClient, EventwireError, ready } from "./client.js";
export type {
  BackoffOptions,
  ClientErrorKind,
  ClientOptions,
  EventMap,
  EventType,
  EventwireClient,
  EventwireErrorType,
  EventwireEvent,
  LifecycleEvents,
  Listener,
  ListenerEvent,
  ReadyState,
  SystemEvents,
} from "./types.js";
