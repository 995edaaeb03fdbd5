// Runs the `remove.bg` npm client as published, with only its hard-coded endpoint constant pointed at
// the Clearcut test server. Usage: node removebg_client.js ENDPOINT FUNCTION OPTIONS_JSON
// Prints {"ok": true, "result": {...}} or {"ok": false, "error": ...} on one line.
"use strict";
const fs = require("fs");
const path = require("path");
const Module = require("module");

const [, , endpoint, fn, optionsJson] = process.argv;
const file = require.resolve("remove.bg");
const constant = 'const API_ENDPOINT = "https://api.remove.bg/v1.0/removebg";';
const source = fs.readFileSync(file, "utf8");
if (!source.includes(constant)) {
  throw new Error("the remove.bg package no longer defines " + constant);
}
const mod = new Module(file, module);
mod.filename = file;
mod.paths = Module._nodeModulePaths(path.dirname(file));
mod._compile(source.replace(constant, `const API_ENDPOINT = ${JSON.stringify(endpoint)};`), file);

mod.exports[fn](JSON.parse(optionsJson)).then(
  (result) => console.log(JSON.stringify({ ok: true, result: { ...result, base64img: undefined } })),
  (error) => console.log(JSON.stringify({ ok: false, error })),
);
