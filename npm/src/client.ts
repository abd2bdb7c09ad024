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
 * `type` says which; `option` names the offending option when there is one.
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

/** The `type`s the wasm SDK puts on the errors it throws (`Error::kind` in client-wasm). */
const WASM_ERROR_TYPES: readonly EventwireErrorType[] = [
  "invalid_option",
  "unknown_option",
  "invalid_url",
  "invalid_argument",
];

/** Turns an error thrown by the wasm SDK into an {@link EventwireError}. */
function fromWasm(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const { type, option } = error as Error & { type?: unknown; option?: unknown };
  if (typeof type !== "string" || !WASM_ERROR_TYPES.includes(type as EventwireErrorType)) {
    return error;
  }
  return new EventwireError(type as EventwireErrorType, error.message, {
    option: typeof option === "string" ? option : undefined,
    cause: error,
  });
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
  } catch (error) {
    throw fromWasm(error);
  }
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
  const client = loaded ? wasmClient(url, options) : queuedClient(url, options);
  return client as unknown as EventwireClient<M>;
}
