// The scenario-engine extension: .mock highlighting comes from package.json (the TextMate
// grammar and the language configuration) and the YAML schema from its yamlValidation; this
// file starts the language server, `scenario-engine lsp`, over stdio, for .mock files, in
// trusted workspaces.
// Plain JavaScript, no build step.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client = null;
let output = null;

function serverOptions() {
  const config = vscode.workspace.getConfiguration("scenarioEngine");
  const command = config.get("server.command", "scenario-engine") || "scenario-engine";
  const args = config.get("server.args", ["lsp"]);
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  // No `transport`: an executable without one already speaks over stdio, whereas
  // `transport: TransportKind.stdio` makes vscode-languageclient append `--stdio` to the
  // arguments, which `scenario-engine lsp` refuses (the server then never starts).
  return { command, args, options: cwd ? { cwd } : {} };
}

async function start() {
  // The server is a program run in the workspace's folder: in a workspace its user has not
  // trusted (Restricted Mode), .mock files are only highlighted, and the server starts when
  // the workspace is trusted (see activate).
  if (!vscode.workspace.isTrusted) return;
  const config = vscode.workspace.getConfiguration("scenarioEngine");
  if (!config.get("server.enabled", true)) return;
  const server = serverOptions();
  client = new LanguageClient(
    "scenarioEngine",
    "scenario-engine",
    server,
    {
      documentSelector: [{ scheme: "file", language: "mock" }, { scheme: "untitled", language: "mock" }],
      outputChannel: output,
    },
  );
  try {
    await client.start();
  } catch (error) {
    client = null;
    const shown = [server.command, ...server.args].join(" ");
    vscode.window.showErrorMessage(
      `scenario-engine: could not start the language server (${shown}): ${error.message ?? error}. ` +
        "Install scenario-engine, or set scenarioEngine.server.command to its full path.",
    );
  }
}

async function stop() {
  if (!client) return;
  const running = client;
  client = null;
  await running.stop();
}

async function restart() {
  await stop();
  await start();
}

function activate(context) {
  output = vscode.window.createOutputChannel("scenario-engine");
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand("scenarioEngine.restartServer", restart),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("scenarioEngine.server")) restart();
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(start),
  );
  return start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
