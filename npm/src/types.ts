/**
 * Public types of the eventwire client. The wire contract they describe is the hub's
 * `docs/PROTOCOL.md`.
 *
 * @packageDocumentation
 */

import type { EventwireError } from "./client.js";

/** `0` connecting (or waiting to reconnect), `1` open, `2` closed, as in `EventSource`. */
export type ReadyState = 0 | 1 | 2;

/**
 * The reconnect schedule. The client owns every reconnect: on any failure it closes the
 * `EventSource` and waits `min(initialDelayMs × factorⁿ⁻¹, maxDelayMs)`, less a random share of
 * at most `jitter`, before attempt `n`. The hub's `retryMs` is the floor of the first delay.
 */
export interface BackoffOptions {
  /** First delay. Default 2000. */
  initialDelayMs?: number;
  /** Each delay is the previous one times this (at least 1). Default 2. */
  factor?: number;
  /** Upper bound for a delay. Default 30000. */
  maxDelayMs?: number;
  /** Failed attempts before giving up with a `retries_exhausted` error. Default `Infinity`: never give up (the delay stays capped at `maxDelayMs`). */
  maxAttempts?: number;
  /** Random spread, 0 to 1: a delay `d` becomes a value in `[d × (1 − jitter), d]`. Default 0.5. */
  jitter?: number;
}

/** Options of {@link createClient}. All are optional; unknown keys throw. */
export interface ClientOptions {
  /** An id your app chooses; a message to this client reaches all its tabs. */
  clientId?: string;
  /** Topics to join. */
  topics?: string[];
  /** Event types to receive (filtered by the hub). System events always arrive. */
  events?: string[];
  /** A JWT, sent as the `token` query parameter (proxies and access logs keep URLs: prefer `getTicket`). */
  token?: string;
  /** Called before every connect and reconnect, so short-lived tokens refresh. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /**
   * Called before every connect and reconnect for a single-use ticket, sent as the `ticket`
   * query parameter instead of a token, so no token travels in a URL (`EventSource` cannot
   * send headers). Get it from the hub's `POST /tickets` with the token in an
   * `Authorization: Bearer` header, or from your own backend. A throw, a rejection or anything
   * but a non-empty string is a failed attempt: an `error` event of kind `ticket_failed`
   * (its `error` an {@link EventwireError} whose `cause` is what was thrown), then a retry on
   * the backoff. Excludes `token` and `getToken`.
   *
   * @example
   * ```ts
   * getTicket: async () => {
   *   const res = await fetch("https://hub.example/tickets", {
   *     method: "POST",
   *     headers: { Authorization: `Bearer ${await myToken()}` },
   *   });
   *   if (!res.ok) throw new Error(`tickets: ${res.status}`);
   *   return (await res.json()).ticket;
   * }
   * ```
   */
  getTicket?: () => string | Promise<string>;
  /** Start after this event id (the hub replays what came after it). */
  lastEventId?: string;
  /** Passed to `EventSource` (cookies on cross-origin hubs). Default false. */
  withCredentials?: boolean;
  /** Connect as soon as the client is created. Default true. */
  autoConnect?: boolean;
  /** When false nothing connects; listeners are kept. Default true. */
  enabled?: boolean;
  /** Reconnect schedule. */
  backoff?: BackoffOptions;
  /** Treat the connection as dead after this long without any event or heartbeat. Default 2.5 × the hub's heartbeat; 0 turns the watchdog off. */
  heartbeatTimeoutMs?: number;
  /**
   * The `EventSource` class to use instead of the global one: for tests, or in Node the
   * `eventsource` package's (`import { EventSource } from "eventsource"`).
   */
  EventSource?: new (url: string, init?: { withCredentials?: boolean }) => unknown;
  /**
   * Share one hub connection with the other tabs of this origin whose client has the same
   * URL and options. One tab leads (holds the connection; a Web Lock elects it), the others
   * receive its events, lifecycle events and state through a `BroadcastChannel`; when it
   * goes, the next tab leads and resumes from the last id it handed out. A leading tab the
   * browser froze in the background (it keeps its lock but runs nothing) is replaced once
   * it has been silent for three of the hub's heartbeat intervals (at least 5 s); thawed, it
   * closes its connection and follows. Compared: the
   * resolved URL, `clientId`, `topics`, `events`, `token`, `lastEventId`, `withCredentials`,
   * `heartbeatTimeoutMs`, `backoff`, and whether `getToken`, `getTicket` and `EventSource`
   * are given (functions cannot be compared: `getToken` and `getTicket` run in the leading
   * tab only, so give every tab one that works). Where Web Locks
   * or `BroadcastChannel` are missing, each tab connects on its own. Default false.
   */
  shareAcrossTabs?: boolean;
}

/** What a listener of an application event receives. */
export interface EventwireEvent<T = unknown> {
  /** The event type. */
  type: string;
  /** The payload decoded as JSON, or the raw string when it is not JSON. */
  data: T;
  /** The payload as sent. */
  raw: string;
  /**
   * The stream's last event id when this event was dispatched (opaque), as `EventSource`'s
   * `lastEventId`: an event without an `id:` line carries the previous id. `null` when no id
   * has been set on this connection, or after an empty `id:` line reset it.
   */
  id: string | null;
}

/**
 * `error` lifecycle event kinds: the SDK's (`connection`, `decode`, `retries_exhausted`,
 * `server`, `ticket_failed`: `getTicket` gave no ticket), and two of a client created before
 * the WebAssembly module was ready, which then ends CLOSED: `invalid_options` (its options
 * were refused once checked) and `unsupported_environment` (the module could not be loaded).
 */
export type ClientErrorKind =
  | "connection"
  | "decode"
  | "retries_exhausted"
  | "server"
  | "ticket_failed"
  | "invalid_options"
  | "unsupported_environment";

/** Lifecycle events and what their listeners receive. */
export interface LifecycleEvents {
  /** The stream opened. */
  open: { type: "open" };
  /** `readyState` changed. */
  statechange: { type: "statechange"; readyState: ReadyState };
  /** A reconnect is scheduled. */
  reconnecting: { type: "reconnecting"; attempt: number; delayMs: number };
  /** The hub's history did not reach back far enough: events were lost; refetch your state. */
  gap: EventwireEvent<{ lastEventId: string; oldestAvailableId: string | null }> & { type: "gap" };
  /**
   * Something went wrong. With kind `ticket_failed`, `error` is the {@link EventwireError}
   * (type `ticket_failed`, option `getTicket`, `cause` what `getTicket` threw; in a tab that
   * receives a shared connection, without `cause`).
   */
  error: { type: "error"; kind: ClientErrorKind; message: string; error?: EventwireError };
  /** With `shareAcrossTabs`: this tab's role, or the number of tabs sharing, changed. */
  leader: { type: "leader"; leader: boolean; tabs: number };
}

/**
 * The hub's system events (`docs/PROTOCOL.md`), delivered to listeners that ask for them by
 * name. Checked against the protocol and the SDK by `client-wasm/tests/contract.rs`.
 */
export interface SystemEvents {
  /** First event of every stream. */
  __connected: EventwireEvent<{
    connectionId: string;
    clientId: string;
    userId: string | null;
    heartbeatSecs: number;
    heartbeatEvent: boolean;
    /** The `retry:` hint in milliseconds (EventSource does not expose `retry:` lines). */
    retryMs: number;
    /** How many missed events follow (the replay). */
    replayCount: number;
    serverTime: string;
  }>;
  /** The hub is alive; its id (when set) is the connection's position. */
  __heartbeat: EventwireEvent<{ serverTime: string }>;
  /** Moves the client's last event id (after a replay); carries nothing else. */
  __position: EventwireEvent<Record<string, never>>;
  /** Events were lost: the history no longer reaches back to the client's id. */
  __gap: EventwireEvent<{ lastEventId: string; oldestAvailableId: string | null }>;
  /** The hub is shutting down; the client reconnects after at least `retryMs`. */
  __shutdown: EventwireEvent<{ retryMs: number }>;
  /** The hub ends this stream on purpose; the client reconnects after at least `retryMs`. */
  __error: EventwireEvent<{ reason: string; message: string; retryMs: number }>;
}

/** Maps application event types to their payload types, e.g. `{ notification: { message: string } }`. */
export type EventMap = Record<string, unknown>;

/** Everything a listener of `K` receives, for a client typed with map `M`. */
export type ListenerEvent<M extends EventMap, K extends string> = K extends keyof LifecycleEvents
  ? LifecycleEvents[K]
  : K extends keyof SystemEvents
    ? SystemEvents[K]
    : K extends keyof M
      ? EventwireEvent<M[K]>
      : EventwireEvent<unknown>;

/** Event types a client typed with `M` can listen to. */
export type EventType<M extends EventMap> =
  | (keyof M & string)
  | keyof LifecycleEvents
  | keyof SystemEvents
  | (string & {});

/** A listener for event type `K`. */
export type Listener<M extends EventMap, K extends string> = (event: ListenerEvent<M, K>) => void;

/**
 * A reconnecting, replaying `EventSource` for an eventwire hub. Created by {@link createClient}.
 *
 * @typeParam M - payload types of the application events, for typed listeners.
 */
export interface EventwireClient<M extends EventMap = EventMap> {
  /** `0` connecting (or waiting to reconnect), `1` open, `2` closed. */
  readonly readyState: ReadyState;
  /** The hub URL, resolved against the page. */
  readonly url: string;
  /** Failed attempts since the last healthy connection. */
  readonly reconnectAttempts: number;
  /** The id of the last event received (or the `lastEventId` option). */
  readonly lastEventId: string | undefined;
  /** Whether this tab holds the connection: false in a tab that receives it from another (`shareAcrossTabs`). */
  readonly leader: boolean;
  /** How many tabs share the connection (1 without `shareAcrossTabs`). */
  readonly tabs: number;
  /** Adds a listener; adding the same function twice for a type has no effect. Throws an {@link EventwireError} (`invalid_argument`) for a bad type or listener. */
  addEventListener<K extends EventType<M>>(type: K, listener: Listener<M, K>): void;
  /** Removes a listener added with `addEventListener`. */
  removeEventListener<K extends EventType<M>>(type: K, listener: Listener<M, K>): void;
  /** Adds a listener; returns a function that removes it. Throws an {@link EventwireError} (`invalid_argument`) for a bad type or listener. */
  on<K extends EventType<M>>(type: K, listener: Listener<M, K>): () => void;
  /** Adds a listener for the next event of that type only; returns a function that removes it. */
  once<K extends EventType<M>>(type: K, listener: Listener<M, K>): () => void;
  /** Connects (after `autoConnect: false`, or after retries were exhausted). */
  connect(): void;
  /** Reconnects now and resets the backoff. */
  reconnect(): void;
  /** Ends everything: closes the stream, clears every timer, removes every listener. No callback runs after it. In a tab sharing its connection, only this tab lets go (a leading tab hands the connection to the next). */
  close(): void;
}

/**
 * What went wrong, in {@link EventwireError.type}: the SDK's own error kinds (checked against
 * the Rust side by `client-wasm/tests/contract.rs`), and `unsupported_environment` from this
 * package (no browser, or the wasm failed to load). All are thrown but `ticket_failed`
 * (`getTicket` threw, rejected or gave no string), which is never thrown: it is the `error`
 * of an `error` event, and the client retries.
 */
export type EventwireErrorType =
  | "invalid_option"
  | "unknown_option"
  | "invalid_url"
  | "invalid_argument"
  | "ticket_failed"
  | "unsupported_environment";
