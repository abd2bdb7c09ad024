/**
 * `createClient` over the WebAssembly SDK. The module loads the wasm by itself when it is
 * imported in a browser (fetched relative to this file, so bundlers emit it as an asset and a
 * plain page needs no setup); on a server (SSR) it loads nothing and touches no browser API.
 */

import initWasm, { createClient as createWasmClient } from "../wasm/eventwire_client.js";
import type {
  ClientOptions,
  EventMap,
  EventwireClient,
  EventwireErrorType,
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

const isBrowser =
  typeof window !== "undefined" ||
  typeof (globalThis as { importScripts?: unknown }).importScripts === "function";

/** Why the wasm could not be loaded, if it could not. */
let loadError: unknown;

if (isBrowser) {
  try {
    await initWasm({
      module_or_path: new URL("../wasm/eventwire_client_bg.wasm", import.meta.url),
    });
  } catch (error) {
    // Keep the app importable; createClient explains the problem when called.
    loadError = error;
  }
}

/** The `type`s the wasm SDK puts on the errors it throws (`Error::kind` in client-wasm). */
const WASM_ERROR_TYPES: readonly EventwireErrorType[] = [
  "invalid_option",
  "unknown_option",
  "invalid_url",
  "invalid_argument",
];

/** The client methods that validate their arguments in the wasm SDK. */
const CHECKED_METHODS = ["on", "once", "addEventListener", "removeEventListener"] as const;

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

/**
 * Creates a client for the hub's `/events` endpoint at `url` and, unless `autoConnect: false`
 * or `enabled: false`, connects.
 *
 * @typeParam M - payload types of your events, so listeners are typed:
 * `createClient<{ notification: { message: string } }>(url)`.
 * @throws {@link EventwireError} for bad options, a malformed URL, or outside a browser.
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
  if (!isBrowser) {
    throw new EventwireError(
      "unsupported_environment",
      "eventwire: createClient needs a browser (EventSource and WebAssembly); during server-side rendering create clients in effects",
    );
  }
  if (loadError !== undefined) {
    throw new EventwireError(
      "unsupported_environment",
      `eventwire: the WebAssembly module could not be loaded: ${String(loadError)}`,
      { cause: loadError },
    );
  }
  let client: EventwireClient<M>;
  try {
    client = createWasmClient(url, options) as unknown as EventwireClient<M>;
  } catch (error) {
    throw fromWasm(error);
  }
  // Their errors become EventwireErrors too (own properties over the wasm class's methods).
  const own = client as unknown as Record<string, (...args: unknown[]) => unknown>;
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
