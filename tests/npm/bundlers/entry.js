// What a user of any bundler writes: no init(), no configuration for the wasm.
import { createClient } from "eventwire";

const params = new URLSearchParams(location.search);
const client = createClient(`${params.get("hub")}/events`, { clientId: params.get("client") });
client.on("open", () => (document.getElementById("state").textContent = "connected"));
client.on("notification", (e) => (document.getElementById("message").textContent = e.data.message));
client.on("error", (e) => console.error(`eventwire ${e.kind}: ${e.message}`));
