/* tslint:disable */
/* eslint-disable */

/**
 * An eventwire client: a reconnecting
 * [`EventSource`](https://developer.mozilla.org/en-US/docs/Web/API/EventSource) for the hub.
 * Created by [`create_client`] (`createClient` in JavaScript).
 */
export class EventwireClient {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Adds `listener` for `type` (an event type from the hub, a system event such as
     * `__connected`, or a lifecycle event: `open`, `statechange`, `reconnecting`, `gap`,
     * `error`). Adding the same function twice for a type has no effect, as with
     * [`EventTarget.addEventListener`](https://developer.mozilla.org/en-US/docs/Web/API/EventTarget/addEventListener).
     */
    addEventListener(event_type: string, listener: Function): void;
    /**
     * Ends everything: closes the stream, clears every timer, removes every listener.
     * No callback runs after `close()`.
     */
    close(): void;
    /**
     * Connects (after `autoConnect: false`, or after retries were exhausted).
     */
    connect(): void;
    /**
     * Adds `listener` for `type`; returns a function that removes it.
     */
    on(event_type: string, listener: Function): Function;
    /**
     * Adds `listener` for the next `type` event only; returns a function that removes it.
     */
    once(event_type: string, listener: Function): Function;
    /**
     * Reconnects now and resets the backoff.
     */
    reconnect(): void;
    /**
     * Removes `listener` from `type`.
     */
    removeEventListener(event_type: string, listener: Function): void;
    /**
     * The id of the last event received (or the `lastEventId` option), or `undefined`.
     */
    readonly lastEventId: string | undefined;
    /**
     * `0` connecting (or waiting to reconnect), `1` open, `2` closed.
     */
    readonly readyState: number;
    /**
     * Failed connection attempts since the last healthy connection.
     */
    readonly reconnectAttempts: number;
    /**
     * The hub URL, resolved against the page.
     */
    readonly url: string;
}

/**
 * `createClient(url, options)`: creates a client and, unless `autoConnect: false` or
 * `enabled: false`, connects.
 *
 * # Errors
 * Throws an `Error` naming the option for bad options (unknown key, wrong type, negative
 * delay, factor below 1) or a malformed URL.
 */
export function createClient(url: any, options: any): EventwireClient;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly R: WebAssembly.Memory;
    readonly S: (a: number, b: number) => void;
    readonly T: (a: any, b: any) => [number, number, number];
    readonly U: (a: number, b: any, c: any) => [number, number];
    readonly V: (a: number) => void;
    readonly W: (a: number) => void;
    readonly X: (a: number) => any;
    readonly Y: (a: number, b: any, c: any) => [number, number, number];
    readonly Z: (a: number, b: any, c: any) => [number, number, number];
    readonly _: (a: number) => number;
    readonly $: (a: number) => void;
    readonly aa: (a: number) => number;
    readonly ba: (a: number, b: any, c: any) => [number, number];
    readonly ca: (a: number) => any;
    readonly fa: (a: number, b: number, c: number, d: any) => void;
    readonly ga: (a: number, b: number) => number;
    readonly ha: (a: number, b: number, c: number, d: number) => number;
    readonly ia: (a: number, b: number, c: number) => void;
    readonly ja: (a: number) => void;
    readonly ka: () => number;
    readonly la: WebAssembly.Table;
    readonly ma: (a: number, b: number) => void;
    readonly na: (a: number) => void;
    readonly oa: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
