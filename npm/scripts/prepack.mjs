// `npm pack` / `npm publish` run this. Inside the eventwire repository it builds the package
// (scripts/build-npm.sh: the TypeScript layer, next to the committed wasm). Anywhere else (a copy
// of npm/, a CI step that packs what an earlier step built) it builds nothing and checks that
// the built files are there, so packing never reaches outside the package.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const pkg = fileURLToPath(new URL("..", import.meta.url));
const build = fileURLToPath(new URL("../../scripts/build-npm.sh", import.meta.url));
if (existsSync(build) && existsSync(fileURLToPath(new URL("../../Cargo.toml", import.meta.url)))) {
  execFileSync("bash", [build], { stdio: "inherit" });
} else {
  const needed = [
    "dist/index.js",
    "dist/react.js",
    "wasm/eventwire_client.js",
    "wasm/eventwire_client_bg.wasm",
    "LICENSE-MIT",
    "LICENSE-APACHE",
  ];
  const missing = needed.filter((f) => !existsSync(`${pkg}/${f}`));
  if (missing.length > 0) {
    console.error(
      `eventwire prepack: not in the eventwire repository, and the built files are missing: ${missing.join(", ")}.\n` +
        "Build first in the repository (bash scripts/build-npm.sh), then pack that npm/ directory or a copy of it.",
    );
    process.exit(1);
  }
}
