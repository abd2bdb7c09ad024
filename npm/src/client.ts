/**
 * `createClient` over the WebAssembly SDK. No `init()` and no top-level await: the first
 * `createClient` (or {@link ready}) starts loading the wasm, fetched relative to this file (so
 * bundlers emit it as an asset and a plain page needs no setup), and a client created before
 * it is ready queues what it is asked until then. On a server (SSR) nothing loads and no
 * browser API is touched.
 */

import initWasm, { createClient as createWasmClient } from "../wasm/eventwire_client.js";
import type {
  ClientOptions,
  EventMap,
  EventwireClient,
  EventwireErrorType,
  ReadyState,
} from "./types.js";

/**
 * The error the SDK throws: bad options or a malformed URL (`createClient`), a bad argument
 * (`on`, `once`, `addEventListener`, `removeEventListener`), or a page that cannot run the SDK.
 * `type` says which; `option` names the offending option when there is one. One is never
 * thrown: `ticket_failed`, the `error` of an `error` event when `getTicket` gave no ticket.
 */
export class EventwireError extends Error {
  /** What went wrong. */
  readonly type: EventwireErrorType;
  /** The option at fault (`backoff.factor`, `topics[2]`, `url`), when there is one. */
  readonly option: string | undefined;

  constructor(
    type: EventwireErrorType,
    message: string,
    options?: { option?: string | undefined; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "EventwireError";
    this.type = type;
    this.option = options?.option;
  }
}

/** The wasm's loading, once started. */
let loading: Promise<void> | undefined;
/** Set once the wasm is ready. */
let loaded = false;

function unsupported(why: string, cause?: unknown): EventwireError {
  return new EventwireError("unsupported_environment", `eventwire: ${why}`, { cause });
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Loads the WebAssembly module (once; `createClient` starts it too). Optional: after it
 * resolves, `createClient` checks its options at once, so bad options always throw. In Node
 * (tests, jsdom) the module is read from disk.
 *
 * @throws (rejects with) {@link EventwireError} `unsupported_environment` when the module
 * cannot be loaded.
 */
export function ready(): Promise<void> {
  // This exact expression, so that bundlers emit the wasm as an asset.
  let wasm: URL | Uint8Array = new URL("../wasm/eventwire_client_bg.wasm", import.meta.url);
  // Made absolute against the page (Turbopack's URL objects are relative to it). Vite 5-7's
  // dev server serves pre-bundled dependencies from node_modules/.vite/, where the relative
  // URL misses; the package itself is served from node_modules.
  wasm = new URL(
    String(wasm).replace(/\/\.vite\/.*/, "/eventwire/wasm/eventwire_client_bg.wasm"),
    globalThis.location?.href,
  );
  if (wasm.protocol == "file:") {
    // Node (no fetch for files): `getBuiltinModule`, which no bundler follows.
    const fs = (globalThis as { process?: { getBuiltinModule?(id: string): unknown } }).process?.getBuiltinModule?.(
      "fs",
    ) as { readFileSync(path: URL): Uint8Array } | undefined;
    if (fs) wasm = fs.readFileSync(wasm);
  }
  loading ??= initWasm({ module_or_path: wasm }).then(
    () => {
      loaded = true;
    },
    (error: unknown) => {
      loading = undefined;
      throw unsupported(`the WebAssembly module could not be loaded: ${message(error)}`, error);
    },
  );
  return loading;
}

/**
 * Turns an error made by the wasm SDK (an `Error` with a string `type`: `Error::kind` in
 * client-wasm, whose names `client-wasm/tests/contract.rs` checks against
 * {@link EventwireErrorType}) into an {@link EventwireError}. Its `cause` is the wasm's error,
 * or for `ticket_failed` what `getTicket` threw or gave.
 */
function fromWasm(error: unknown): unknown {
  const { type, option, cause } = error as { type?: unknown; option?: string; cause?: unknown };
  return error instanceof Error && typeof type == "string"
    ? new EventwireError(type as EventwireErrorType, error.message, {
        option,
        cause: "cause" in error ? cause : error,
      })
    : error;
}

type AnyClient = EventwireClient<EventMap>;
type Method = (...args: unknown[]) => unknown;

/** The client methods that validate their arguments in the wasm SDK. */
const CHECKED_METHODS = ["on", "once", "addEventListener", "removeEventListener"] as const;

/** The wasm client, whose argument errors become EventwireErrors. */
function wasmClient(url: string, options: ClientOptions | undefined): AnyClient {
  let client: AnyClient;
  try {
    client = createWasmClient(url, options) as unknown as AnyClient;
    // A client of its own: it leads, alone (see `shareAcrossTabs`).
    Object.defineProperties(client, { leader: { value: true }, tabs: { value: 1 } });
  } catch (error) {
    throw fromWasm(error);
  }
  // Listened to first, so every `error` listener sees the `error` field (getTicket's
  // failure) as an EventwireError.
  client.on("error", (event: { error?: unknown }) => {
    if (event.error) event.error = fromWasm(event.error);
  });
  const own = client as unknown as Record<string, Method>;
  for (const name of CHECKED_METHODS) {
    const method = own[name]!;
    own[name] = (...args) => {
      try {
        return method.apply(client, args);
      } catch (error) {
        throw fromWasm(error);
      }
    };
  }
  return client;
}

/**
 * A client created before the wasm was ready: it records what it is asked, in order, and
 * replays it on the wasm client once the module has loaded; from then on it forwards. Options
 * are checked then: bad ones close it with an `error` event of kind `"invalid_options"` (and a
module that cannot load, with kind `"unsupported_environment"`).
 */
function queuedClient(url: string, options: ClientOptions | undefined): AnyClient {
  let real: AnyClient | undefined;
  let closed = false;
  let queue: ((client: AnyClient) => void)[] = [];
  /** Its own listeners of `error` and `statechange`, told if the options are refused. */
  const early: Entry[] = [];
  const later = (step: (client: AnyClient) => void) => (real ? step(real) : queue.push(step));
  const subscribe = (name: "on" | "once") => (type: string, listener: (event: never) => void) => {
    check(type, listener);
    early.push([type, listener]);
    let off: (() => void) | undefined;
    let removed = false;
    later((client) => {
      if (!removed) off = client[name](type, listener as never);
    });
    return () => {
      removed = true;
      off?.();
    };
  };
  const facade = {
    get readyState(): ReadyState {
      if (real) return real.readyState;
      return closed ? 2 : options?.autoConnect === false || options?.enabled === false ? 2 : 0;
    },
    get url() {
      return real ? real.url : url;
    },
    get reconnectAttempts() {
      return real ? real.reconnectAttempts : 0;
    },
    get lastEventId() {
      return real ? real.lastEventId : options?.lastEventId || undefined;
    },
    leader: true,
    tabs: 1,
    on: subscribe("on"),
    once: subscribe("once"),
    addEventListener(type: string, listener: (event: never) => void) {
      check(type, listener);
      early.push([type, listener]);
      later((client) => client.addEventListener(type, listener as never));
    },
    removeEventListener(type: string, listener: (event: never) => void) {
      check(type, listener);
      later((client) => client.removeEventListener(type, listener as never));
    },
    connect: () => later((client) => client.connect()),
    reconnect: () => later((client) => client.reconnect()),
    close() {
      closed = true;
      queue = [];
      real?.close();
    },
  };
  ready().then(
    () => {
      if (closed) return;
      try {
        real = wasmClient(url, options);
      } catch (error) {
        closed = true;
        tell(early, "error", { type: "error", kind: "invalid_options", message: message(error) });
        return;
      }
      for (const step of queue) step(real);
      queue = [];
      early.length = 0;
    },
    (error: unknown) => {
      closed = true;
      tell(early, "error", { type: "error", kind: "unsupported_environment", message: message(error) });
    },
  );
  return facade as unknown as AnyClient;
}

/** Throws {@link EventwireError} `invalid_argument` for a bad listener-method argument. */
function check(type: unknown, listener: unknown): void {
  if (typeof type !== "string") throw argumentError("type", "expected a string");
  if (typeof listener !== "function") throw argumentError("listener", "expected a function");
}

function argumentError(argument: string, reason: string): EventwireError {
  return new EventwireError(
    "invalid_argument",
    `eventwire: invalid argument \`${argument}\`: ${reason}`,
  );
}

type Listener = (event: never) => void;
/** A listener of a type; `true` for a `once` listener. */
type Entry = [string, Listener, boolean?];

/**
 * Calls the listeners of `type` among `listeners` with `event` (a `once` listener is removed
 * first; one removed meanwhile is skipped); one that throws is logged.
 */
function tell(listeners: Entry[], type: string, event: object): void {
  for (const entry of listeners.filter((l) => l[0] === type)) {
    if (!listeners.includes(entry)) continue;
    if (entry[2]) listeners.splice(listeners.indexOf(entry), 1);
    try {
      entry[1](event as never);
    } catch (error) {
      console.error("eventwire: a listener threw", error);
    }
  }
}

// Sharing one connection across tabs (`shareAcrossTabs`).
/*
 * `shareAcrossTabs`: one hub connection for all the tabs of an origin that create a client
 * with the same URL and options.
 *
 * - Election: every tab that joins asks for a Web Lock named after the URL and options
 *   ({@link https://developer.mozilla.org/en-US/docs/Web/API/Web_Locks_API Web Locks}). The
 *   holder leads: it runs the real (wasm) client. The others wait in the lock's queue, so when
 *   the leader closes, crashes or navigates away the browser releases the lock and the next
 *   tab leads at once, resuming from the last event id it was handed.
 * - Distribution: the leader posts every event its client dispatches (stream, system and
 *   lifecycle events, with its `readyState`, `lastEventId` and `reconnectAttempts`) on a
 *   {@link https://developer.mozilla.org/en-US/docs/Web/API/BroadcastChannel BroadcastChannel}
 *   of the same name. Each tab keeps its own listeners and tells the others which event types
 *   they need (an `EventSource` only dispatches types it listens to), so any tab can lead.
 * - Exactly once: events posted by a leader that died reach every tab or none, in order; an
 *   application event can still come twice around a failover (the new leader resumed from an
 *   id before one still in flight), so each tab drops an id it delivered recently.
 * - Tabs sharing: the lock's holder and its queue (`navigator.locks.query()`), so a crashed
 *   tab stops counting without saying goodbye.
 * - A frozen leader (a background tab the browser froze keeps its lock but runs nothing): the
 *   leader posts its state every 2 s and forwards the hub's `__heartbeat`s, which arrive even
 *   while its timers are throttled. A tab that hears no leader for 3 heartbeat intervals (at
 *   least 5 s; 45 s before the first `__connected` says the interval) asks once more, then
 *   steals the lock and leads. Every leader has a term one above the newest it heard of; tabs
 *   ignore a lower term, so the old leader, once thawed, finds its lock gone, closes its
 *   connection and follows.
 *
 * The code lives here, in TypeScript, rather than in the wasm core: locks, channels and
 * structured clone are JavaScript APIs, each of which would cost the wasm its glue, and the
 * real client stays the same whether it is shared or not.
 */

/** `readyState`, `lastEventId`, `reconnectAttempts`, as the leader last reported them. */
type State = [ReadyState, string | undefined, number];
/** What tabs post: an event, the leader's state and tab count, a tab's types, a goodbye, a command. */
type Message =
  | { k: "e"; t: string; e: unknown; s: State; g: number }
  | { k: "s"; s: State; n: number; g: number; p: number }
  | { k: "h"; id: string; types: string[] }
  | { k: "b"; id: string }
  | { k: "c"; c: "connect" | "reconnect" };

const LIFECYCLE = ["open", "statechange", "reconnecting", "gap", "error"];
/** System events a leader always forwards: followers read the heartbeat interval and liveness. */
const BEATS = ["__connected", "__heartbeat"];
/** A silent leader is waited for this many heartbeat intervals, and at least `STALE_MIN` ms. */
const STALE_BEATS = 3;
const STALE_MIN = 5000;
/** How many delivered application event ids each tab remembers, to drop a repeat. */
const RECENT = 512;

/** Whether the browser has what sharing needs; without it each tab connects on its own. */
const canShare = (): boolean =>
  typeof BroadcastChannel == "function" && !!globalThis.navigator?.locks;

/**
 * A client whose connection is shared with the other tabs. `start(create)` is called once
 * the wasm is ready (at once when it already is); `create` makes a real client and throws an
 * `EventwireError` for bad options. `fail(message)` reports options refused after the fact.
 */
function sharedClient(
  url: string,
  options: ClientOptions,
  check: (type: unknown, listener: unknown) => void,
): [AnyClient, (create: (url: string, options: ClientOptions) => AnyClient) => void, (kind: string, message: string) => void] {
  const listeners: Entry[] = [];
  const id = Math.random().toString(36).slice(2);
  /** Other tabs' event types, by tab. */
  const others = new Map<string, string[]>();
  const recent: unknown[] = [];
  /** Forwarders on the real client, by type. */
  const forwarders = new Map<string, () => void>();
  const idle = options.autoConnect === false || options.enabled === false;
  let state: State = [idle ? 2 : 0, options.lastEventId || undefined, 0];
  let href = url;
  let name: string | undefined;
  let make: ((url: string, options: ClientOptions) => AnyClient) | undefined;
  let channel: BroadcastChannel | undefined;
  let abort: AbortController | undefined;
  let release: (() => void) | undefined;
  let real: AnyClient | undefined;
  let poll: ReturnType<typeof setInterval> | undefined;
  let leader: boolean | undefined;
  let tabs = 1;
  let closed = false;
  /** The newest leader's term this tab knows of: its own while it leads. */
  let term = 0;
  /** When this tab last heard its leader, and how long a silent one is waited for. */
  let heard = 0;
  let patience = 45000;
  let suspect = false;
  let watch: ReturnType<typeof setInterval> | undefined;
  /** Spreads the tabs' takeovers of a frozen leader, so that one usually steals alone. */
  const jitter = Math.random() * 2000;

  const post = (message: Message) => channel?.postMessage(message);
  const snapshot = (): State => (real ? [real.readyState, real.lastEventId, real.reconnectAttempts] : state);
  const types = () => [...new Set(listeners.map((l) => l[0]))];

  const emit = (type: string, event: object) => !closed && tell(listeners, type, event);

  const announce = (n: number) => post({ k: "s", s: snapshot(), n, g: term, p: patience });

  /** Delivers an event to this tab, once: an application event id seen lately is dropped. */
  const receive = (type: string, event: { id?: unknown; data?: { heartbeatSecs?: number } }) => {
    const beat = type == "__connected" && event.data?.heartbeatSecs;
    if (beat) patience = Math.max(STALE_MIN, beat * 1000 * STALE_BEATS);
    if (!LIFECYCLE.includes(type) && !type.startsWith("__") && event.id != null) {
      if (recent.includes(event.id)) return;
      if (recent.push(event.id) > RECENT) recent.shift();
    }
    emit(type, event);
  };

  const role = (lead: boolean, n: number) => {
    if (lead === leader && n === tabs) return;
    leader = lead;
    tabs = n;
    emit("leader", { type: "leader", leader: lead, tabs: n });
  };

  /** The leader listens to `type` on its client and posts what it gets. */
  const forward = (type: string) => {
    if (!real || forwarders.has(type) || type == "leader") return;
    forwarders.set(
      type,
      real.on(type, (event: { id?: unknown; error?: EventwireError }) => {
        // An error's `cause` may not survive structured cloning: its type, message and option go.
        const { error } = event;
        const e = error ? { ...event, error: [error.type, error.message, { option: error.option }] } : event;
        post({ k: "e", t: type, e, s: snapshot(), g: term });
        receive(type, event);
      }),
    );
  };
  const forwardAll = () => {
    for (const type of [...LIFECYCLE, ...BEATS, ...types(), ...[...others.values()].flat()]) forward(type);
  };

  const count = async () => {
    const { held = [], pending = [] } = await navigator.locks.query();
    const n = [...held, ...pending].filter((lock) => lock.name === name).length;
    // Every 2 s, changed or not: the followers' sign that this leader is alive.
    if (real && !closed) {
      role(true, n);
      announce(n);
    }
  };

  const lead = () => {
    if (closed || !make) return;
    term += 1;
    real = make(url, {
      ...options,
      autoConnect: true,
      enabled: true,
      shareAcrossTabs: false,
      // Where the previous leader's last distributed event left every tab.
      lastEventId: state[1] ?? options.lastEventId,
    });
    forwardAll();
    role(true, tabs);
    announce(tabs);
    void count();
    poll = setInterval(count, 2000);
  };

  /** Stops leading (a tab that found this one silent, frozen, took the lock), and queues again. */
  const resign = () => {
    state = snapshot();
    clearInterval(poll);
    forwarders.clear();
    const was = real;
    real = undefined;
    was?.close();
    role(false, tabs);
    heard = Date.now();
    queue();
  };

  /** Asks for the lock (queueing behind the leader), or takes it from a frozen one. */
  const queue = (steal?: boolean) => {
    abort?.abort();
    abort = new AbortController();
    navigator.locks
      .request(name!, steal ? { steal } : { signal: abort.signal }, () => new Promise<void>((r) => ((release = r), lead())))
      // Stolen while leading (this tab was frozen), unless a newer leader's post said so first.
      .catch(() => real && !closed && resign());
  };

  const onMessage = (message: Message) => {
    if (closed) return;
    if (message.k == "h") {
      others.set(message.id, message.types);
      if (real) {
        forwardAll();
        announce(tabs);
        void count();
      }
    } else if (message.k == "b") {
      others.delete(message.id);
      if (real) void count();
    } else if (message.k == "c") {
      real?.[message.c]();
    } else if (message.g > term || (message.g == term && !real)) {
      // A leader's post. One of a newer term than this tab's own while it leads means this
      // tab's lock was stolen while it was frozen.
      if (real) resign();
      term = message.g;
      heard = Date.now();
      suspect = false;
      const was = state[0];
      state = message.s;
      if (message.k == "e") {
        const event = message.e as { id?: unknown; error?: unknown };
        const error = event.error as ConstructorParameters<typeof EventwireError> | undefined;
        if (error) event.error = new EventwireError(...error);
        receive(message.t, event);
      } else {
        // A tab joining a connection that is already open learns it from a snapshot.
        if (was !== state[0]) {
          emit("statechange", { type: "statechange", readyState: state[0] });
          if (state[0] === 1) emit("open", { type: "open" });
        }
        patience = message.p;
        role(false, message.n);
      }
    }
  };

  const join = () => {
    if (channel || closed || !name) return;
    state = [0, state[1], 0];
    channel = new BroadcastChannel(name);
    channel.onmessage = (e: MessageEvent<Message>) => onMessage(e.data);
    queue();
    // After asking for the lock, so that the leader counts this tab.
    post({ k: "h", id, types: types() });
    heard = Date.now();
    watch = setInterval(() => {
      if (real || closed || Date.now() - heard < patience + jitter) return;
      if (!suspect) {
        // Once more first: a tab just thawed may still have the leader's posts queued.
        suspect = true;
        post({ k: "h", id, types: types() });
      } else {
        heard = Date.now();
        suspect = false;
        queue(true);
      }
    }, 1000);
  };

  const subscribe = (type: string, listener: Listener, once: boolean): boolean => {
    check(type, listener);
    if (closed || listeners.some((l) => l[0] === type && l[1] === listener)) return false;
    const known = types().includes(type);
    listeners.push([type, listener, once]);
    if (!known) {
      forward(type);
      post({ k: "h", id, types: types() });
    }
    return true;
  };
  const on = (once: boolean) => (type: string, listener: Listener) => {
    const added = subscribe(type, listener, once);
    return () => added && client.removeEventListener(type, listener as never);
  };
  const command = (c: "connect" | "reconnect") => {
    if (!channel) return join();
    if (real) real[c]();
    else post({ k: "c", c });
  };

  const client = {
    get readyState() {
      return closed ? 2 : snapshot()[0];
    },
    get url() {
      return href;
    },
    get lastEventId() {
      return snapshot()[1];
    },
    get reconnectAttempts() {
      return snapshot()[2];
    },
    get leader() {
      return !!leader;
    },
    get tabs() {
      return tabs;
    },
    on: on(false),
    once: on(true),
    addEventListener(type: string, listener: Listener) {
      subscribe(type, listener, false);
    },
    removeEventListener(type: string, listener: Listener) {
      check(type, listener);
      const i = listeners.findIndex((l) => l[0] === type && l[1] === listener);
      if (i >= 0) listeners.splice(i, 1);
    },
    connect: () => command("connect"),
    reconnect: () => command("reconnect"),
    close() {
      if (closed) return;
      closed = true;
      listeners.length = 0;
      post({ k: "b", id });
      channel?.close();
      abort?.abort();
      clearInterval(poll);
      clearInterval(watch);
      real?.close();
      release?.();
    },
  };

  const start = (create: (url: string, options: ClientOptions) => AnyClient) => {
    // Checks the options (throws for bad ones) and resolves the URL against the page.
    const probe = create(url, { ...options, autoConnect: false });
    href = probe.url;
    probe.close();
    make = create;
    const o = options;
    // What must be equal for tabs to share (getToken, getTicket and EventSource: whether given).
    name = `eventwire ${JSON.stringify([href, o.clientId, o.topics, o.events, o.token, o.lastEventId, !!o.withCredentials, o.heartbeatTimeoutMs, o.backoff, !o.getToken, !o.getTicket, !o.EventSource])}`;
    if (!idle) join();
  };
  const fail = (kind: string, message: string) => {
    emit("error", { type: "error", kind, message });
    client.close();
  };
  return [client as unknown as AnyClient, start, fail];
}

/**
 * Creates a client for the hub's `/events` endpoint at `url` and, unless `autoConnect: false`
 * or `enabled: false`, connects. Before the wasm is ready (the first call starts loading it)
 * the client queues what it is asked; see {@link ready}.
 *
 * @typeParam M - payload types of your events, so listeners are typed:
 * `createClient<{ notification: { message: string } }>(url)`.
 * @throws {@link EventwireError} for bad options or a malformed URL (once the wasm is ready;
 * before, they close the client with an `error` event of kind `"invalid_options"`), and
 * outside a browser.
 *
 * @example
 * ```ts
 * const client = createClient<{ notification: { message: string } }>("/events", { clientId: "alice" });
 * const off = client.on("notification", (e) => console.log(e.data.message));
 * ```
 */
export function createClient<M extends EventMap = EventMap>(
  url: string,
  options?: ClientOptions,
): EventwireClient<M> {
  if (typeof options?.EventSource != "function" && typeof EventSource == "undefined") {
    throw unsupported(
      "no EventSource here: pass an implementation as the `EventSource` option (in Node, the `eventsource` package), or during server-side rendering create clients in effects",
    );
  }
  if (options?.shareAcrossTabs === true && canShare()) {
    const [client, start, fail] = sharedClient(url, options, check);
    if (loaded) start(wasmClient);
    else
      ready().then(
        () => {
          try {
            start(wasmClient);
          } catch (error) {
            fail("invalid_options", message(error));
          }
        },
        (error: unknown) => fail("unsupported_environment", message(error)),
      );
    return client as unknown as EventwireClient<M>;
  }
  const client = loaded ? wasmClient(url, options) : queuedClient(url, options);
  return client as unknown as EventwireClient<M>;
}
