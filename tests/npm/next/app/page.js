// A server component: importing the package during SSR is safe.
import { EventwireError } from "eventwire";
import Live from "./live";
export default function Page() {
  return (<main><p id="ssr">{typeof EventwireError}</p><Live /></main>);
}
