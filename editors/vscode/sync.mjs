// Copies the files the extension ships from the rest of the repository, so that there is one
// source for each: the TextMate grammar (editors/textmate) and the JSON Schema of YAML scenarios
// (scenario_engine/language). `npm install` (prepare) and `vsce package` (vscode:prepublish) run
// it; the copies are not committed (.gitignore).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const copies = [
  [join(root, "editors", "textmate", "mock.tmLanguage.json"), join(here, "syntaxes", "mock.tmLanguage.json")],
  [join(root, "scenario_engine", "language", "scenario.schema.json"), join(here, "schemas", "scenario.schema.json")],
];
for (const [from, to] of copies) {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  console.log(`${from} -> ${to}`);
}
