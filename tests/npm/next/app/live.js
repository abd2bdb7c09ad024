"use client";
import { useEffect, useState } from "react";
import { createClient } from "eventwire";
export default function Live() {
  const [state, setState] = useState("loading");
  const [message, setMessage] = useState("");
  useEffect(() => {
    const params = new URLSearchParams(location.search);
    const client = createClient(`${params.get("hub")}/events`, { clientId: params.get("client") });
    client.on("open", () => setState("connected"));
    client.on("notification", (e) => setMessage(e.data.message));
    client.on("error", (e) => console.error(`eventwire ${e.kind}: ${e.message}`));
    return () => client.close();
  }, []);
  return (<><p id="state">{state}</p><p id="message">{message}</p></>);
}
