// The `floor` client of the browser benchmark (page/bench.js) and of micro.mjs: the least a
// wrapper with the SDK's listener API does per event, in plain JavaScript. Read `data` and
// `lastEventId`, JSON.parse, build `{ type, data, raw, id }`, look the listeners up by type
// and call them. What the SDK could approach; the gap to it is the SDK's own overhead.

/** An EventSource listener that hands `tick` listeners the SDK's event object. */
export function floorListener(tick) {
  const listeners = new Map([["tick", [(e) => tick(e.data)]]]);
  let last = "";
  return (e) => {
    const raw = e.data;
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      data = raw;
    }
    const id = e.lastEventId;
    if (id !== last) last = id;
    const event = { type: e.type, data, raw, id: id || null };
    for (const listener of listeners.get(e.type) ?? []) listener(event);
  };
}
