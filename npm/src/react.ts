/**
 * React bindings: one shared connection per `<EventwireProvider>`, and hooks built on
 * `useSyncExternalStore`. Safe under StrictMode (exactly one connection) and safe to import
 * during server-side rendering (nothing touches `window` at import time).
 *
 * @example
 * ```tsx
 * <EventwireProvider url="/events" options={{ clientId: "alice" }}>
 *   <Inbox />
 * </EventwireProvider>
 *
 * function Inbox() {
 *   const { events, isConnected } = useEvents<{ message: string }>("notification", { limit: 20 });
 *   return <ul>{events.map((e) => <li key={e.id}>{e.data.message}</li>)}</ul>;
 * }
 * ```
 *
 * @packageDocumentation
 */

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useLayoutEffect,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";

import { createClient } from "./client.js";
import type {
  ClientOptions,
  EventMap,
  EventwireClient,
  EventwireEvent,
  ReadyState,
} from "./types.js";

/** Connection state, as returned by {@link useEventwire}. */
export interface EventwireState {
  /** `0` connecting (or waiting to reconnect), `1` open, `2` closed. */
  readyState: ReadyState;
  /** `readyState === 1`. */
  isConnected: boolean;
  /**
   * The client's last event id as of the last state change. Not updated per event, so that
   * {@link useEventwire} re-renders on state changes only; read `client.lastEventId`
   * ({@link useEventwireClient}) for the live value.
   */
  lastEventId: string | undefined;
  /** Failed attempts since the last healthy connection. */
  reconnectAttempts: number;
  /** Whether this tab holds the connection (false in a tab that follows another, with `shareAcrossTabs`). */
  isLeader: boolean;
  /** How many tabs share the connection (1 without `shareAcrossTabs`). */
  tabs: number;
}

/** {@link EventwireState} plus controls. */
export interface UseEventwireResult extends EventwireState {
  /** Reconnect now and reset the backoff. */
  reconnect: () => void;
  /** Close the shared connection. */
  close: () => void;
}

/** Props of {@link EventwireProvider}. */
export interface EventwireProviderProps {
  /** The hub's `/events` URL. */
  url: string;
  /** As for `createClient`. A new object with the same content does not reconnect; `getToken` may change freely. */
  options?: ClientOptions;
  /** Share one hub connection with this origin's other tabs (the `shareAcrossTabs` option, which it overrides when given). */
  shareAcrossTabs?: boolean;
  /** The tree that shares the connection. */
  children?: ReactNode;
}

/** Keeps the connection state and tells subscribed components when it changes. */
class StateStore {
  private listeners = new Set<() => void>();
  private snapshot: EventwireState;

  constructor(private readonly client: EventwireClient | null) {
    this.snapshot = read(client);
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): EventwireState => this.snapshot;

  /** Re-reads the client on a lifecycle event; notifies subscribers if the state changed. */
  refresh = (): void => {
    const next = read(this.client);
    const prev = this.snapshot;
    if (
      next.readyState !== prev.readyState ||
      next.reconnectAttempts !== prev.reconnectAttempts ||
      next.isLeader !== prev.isLeader ||
      next.tabs !== prev.tabs
    ) {
      this.snapshot = next;
      for (const listener of this.listeners) listener();
    }
  };
}

function read(client: EventwireClient | null): EventwireState {
  if (client === null) {
    return { readyState: 0, isConnected: false, lastEventId: undefined, reconnectAttempts: 0, isLeader: false, tabs: 1 };
  }
  const readyState = client.readyState;
  return {
    readyState,
    isConnected: readyState === 1,
    lastEventId: client.lastEventId ?? undefined,
    reconnectAttempts: client.reconnectAttempts,
    isLeader: client.leader,
    tabs: client.tabs,
  };
}

interface Shared {
  client: EventwireClient | null;
  store: StateStore;
}

const EMPTY_STORE = new StateStore(null);
const SERVER_STATE = EMPTY_STORE.getSnapshot();
const Context = createContext<Shared | undefined>(undefined);

const useIsomorphicLayoutEffect = typeof window !== "undefined" ? useLayoutEffect : useEffect;

/** A key that changes only when the options' content changes (functions compared by presence). */
function optionsKey(options: ClientOptions | undefined): string {
  return JSON.stringify(options ?? {}, (_key, value: unknown) => {
    if (typeof value === "function") return "[function]";
    if (typeof value === "number" && !Number.isFinite(value)) return String(value);
    return value;
  });
}

/**
 * Opens one connection for the whole tree below it; every hook below shares it. Unmounting
 * closes it. Changing `url` or the content of `options` replaces it.
 */
export function EventwireProvider({ url, options: given, shareAcrossTabs, children }: EventwireProviderProps) {
  const options = shareAcrossTabs === undefined ? given : { ...given, shareAcrossTabs };
  const optionsRef = useRef(options);
  useIsomorphicLayoutEffect(() => {
    optionsRef.current = options;
  });
  const key = optionsKey(options);
  const [shared, setShared] = useState<Shared>(() => ({ client: null, store: EMPTY_STORE }));

  useEffect(() => {
    const current = optionsRef.current ?? {};
    const connectNow = current.autoConnect !== false && current.enabled !== false;
    const created: ClientOptions = { ...current, autoConnect: false };
    if (current.getToken) {
      // Always the latest getToken, without reconnecting when the function changes.
      created.getToken = () => optionsRef.current?.getToken?.();
    }
    const client = createClient(url, created);
    const store = new StateStore(client);
    // Lifecycle events only: the state never changes at event rate.
    const offs = (["statechange", "open", "reconnecting", "error", "leader"] as const).map(
      (type) => client.on(type, store.refresh),
    );
    setShared({ client, store });
    // Connect on the next tick: under StrictMode the first mount is undone before it fires,
    // so exactly one EventSource is ever opened.
    const timer = connectNow ? setTimeout(() => client.connect(), 0) : undefined;
    return () => {
      clearTimeout(timer);
      for (const off of offs) off();
      client.close();
      setShared((now) => (now.client === client ? { client: null, store: EMPTY_STORE } : now));
    };
  }, [url, key]);

  return createElement(Context.Provider, { value: shared }, children);
}

function useShared(hook: string): Shared {
  const shared = useContext(Context);
  if (shared === undefined) {
    throw new Error(`eventwire: ${hook} must be used inside <EventwireProvider>`);
  }
  return shared;
}

/** The shared connection's state and controls. */
export function useEventwire(): UseEventwireResult {
  const { client, store } = useShared("useEventwire");
  const state = useSyncExternalStore(store.subscribe, store.getSnapshot, () => SERVER_STATE);
  const reconnect = useCallback(() => client?.reconnect(), [client]);
  const close = useCallback(() => client?.close(), [client]);
  return { ...state, reconnect, close };
}

/** The shared client itself (`null` until the provider has created it, and during SSR). */
export function useEventwireClient<M extends EventMap = EventMap>(): EventwireClient<M> | null {
  return useShared("useEventwireClient").client as EventwireClient<M> | null;
}

/**
 * Calls `handler` for every `type` event. The latest `handler` is always used, and changing it
 * neither reconnects nor re-subscribes.
 */
export function useEvent<T = unknown>(type: string, handler: (event: EventwireEvent<T>) => void): void {
  const { client } = useShared("useEvent");
  const handlerRef = useRef(handler);
  useIsomorphicLayoutEffect(() => {
    handlerRef.current = handler;
  });
  useEffect(() => {
    if (client === null) return undefined;
    return client.on(type, (event) => handlerRef.current(event as EventwireEvent<T>));
  }, [client, type]);
}

/**
 * Folds every `type` event into a value with `reduce`, as an external store: the component
 * re-renders when the value changes. The value starts over from `initial` when `type` or the
 * client changes, so a hook never shows another type's (or connection's) events. The base of
 * {@link useLatestEvent} and {@link useEvents}.
 */
function useFoldedEvents<T, V>(
  hook: string,
  type: string,
  initial: V,
  reduce: (value: V, event: EventwireEvent<T>) => V,
): V {
  const { client } = useShared(hook);
  const folded = useRef({ client, type, value: initial });
  if (folded.current.client !== client || folded.current.type !== type) {
    folded.current = { client, type, value: initial };
  }
  const subscribe = useCallback(
    (notify: () => void) => {
      if (client === null) return () => {};
      return client.on(type, (event) => {
        const now = folded.current;
        if (now.client !== client || now.type !== type) return;
        now.value = reduce(now.value, event as EventwireEvent<T>);
        notify();
      });
    },
    // `reduce` is a module-level function or depends only on what is listed by the caller.
    [client, type, reduce],
  );
  return useSyncExternalStore(
    subscribe,
    () => folded.current.value,
    () => initial,
  );
}

const keepLatest = <T,>(_: EventwireEvent<T> | undefined, event: EventwireEvent<T>) => event;

/** The latest `type` event, or `undefined` before the first. */
export function useLatestEvent<T = unknown>(type: string): EventwireEvent<T> | undefined {
  return useFoldedEvents<T, EventwireEvent<T> | undefined>(
    "useLatestEvent",
    type,
    undefined,
    keepLatest,
  );
}

/** Options of {@link useEvents}. */
export interface UseEventsOptions {
  /** Keep at most this many events, the newest. Default 100. */
  limit?: number;
}

/** What {@link useEvents} returns. */
export interface UseEventsResult<T> {
  /** The received `type` events, oldest first, at most `limit`. */
  events: EventwireEvent<T>[];
  /** Whether the shared connection is open. */
  isConnected: boolean;
}

const NO_EVENTS: never[] = [];

/** The last `limit` `type` events, oldest first, and whether the connection is open. */
export function useEvents<T = unknown>(type: string, options?: UseEventsOptions): UseEventsResult<T> {
  const { store } = useShared("useEvents");
  const limit = Math.max(1, options?.limit ?? 100);
  const append = useCallback(
    (list: EventwireEvent<T>[], event: EventwireEvent<T>) => {
      const next = list.concat(event);
      return next.length > limit ? next.slice(next.length - limit) : next;
    },
    [limit],
  );
  const events = useFoldedEvents<T, EventwireEvent<T>[]>("useEvents", type, NO_EVENTS, append);
  const state = useSyncExternalStore(store.subscribe, store.getSnapshot, () => SERVER_STATE);
  return { events, isConnected: state.isConnected };
}
