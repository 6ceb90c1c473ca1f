// Tokenizes .mock files with the TextMate grammar of editors/textmate, the way VS Code does
// (vscode-textmate with the Oniguruma regular expressions of vscode-oniguruma's WASM).
//
//   node tests/node/textmate.mjs GRAMMAR FILE...
//
// Prints JSON: {grammar: {scopeName}, files: {FILE: [{line, depth, tokens: [{start, end, text,
// scopes}]}]}, baseDepth}. `depth` is the depth of the rule stack after the line: a line that
// ends inside a begin/end rule (a string or a template running away) leaves it above baseDepth,
// the depth after an empty line. tests/test_textmate.py runs it.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import vsctm from "vscode-textmate";
import oniguruma from "vscode-oniguruma";

const require = createRequire(import.meta.url);
const [grammarPath, ...files] = process.argv.slice(2);

const wasm = readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm"));
await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));

const rawGrammar = vsctm.parseRawGrammar(readFileSync(grammarPath, "utf8"), grammarPath);
const registry = new vsctm.Registry({
  onigLib: Promise.resolve({
    createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
    createOnigString: (text) => new oniguruma.OnigString(text),
  }),
  loadGrammar: async (scopeName) => (scopeName === rawGrammar.scopeName ? rawGrammar : null),
});
const grammar = await registry.loadGrammar(rawGrammar.scopeName);
if (!grammar) throw new Error(`the grammar ${grammarPath} does not load`);

const baseDepth = grammar.tokenizeLine("", vsctm.INITIAL).ruleStack.depth;
const report = { grammar: { scopeName: rawGrammar.scopeName }, baseDepth, files: {} };
for (const file of files) {
  let stack = vsctm.INITIAL;
  const lines = [];
  readFileSync(file, "utf8").split(/\r?\n/).forEach((text, index) => {
    const result = grammar.tokenizeLine(text, stack);
    stack = result.ruleStack;
    lines.push({
      line: index + 1,
      depth: stack.depth,
      tokens: result.tokens.map((t) => ({
        start: t.startIndex,
        end: Math.min(t.endIndex, text.length),
        text: text.slice(t.startIndex, t.endIndex),
        scopes: t.scopes,
      })),
    });
  });
  report.files[file] = lines;
}
process.stdout.write(JSON.stringify(report));
