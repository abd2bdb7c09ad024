// webpack 5's defaults, plus where to write: `new URL(..., import.meta.url)` assets (the wasm)
// are emitted as they are, with no loader or plugin.
const path = require("node:path");

module.exports = {
  mode: "production",
  entry: "./entry.js",
  output: { path: path.resolve(__dirname, "out/webpack/dist"), filename: "bundle.js" },
};
