// Loads editors/vscode/extension.js with stand-ins for the `vscode` API and
// `vscode-languageclient/node` (neither is installed here), activates it with the settings given
// as JSON in argv[3] (and "untrusted": true for a workspace that is trusted only after the
// activation), and prints what the extension asked for as JSON: the language client's server
// options and document selector, the commands it registered, what a configuration change does.
// tests/test_vscode_extension.py runs it.
"use strict";
const Module = require("node:module");
const path = require("node:path");

const [extensionPath, settingsJson] = process.argv.slice(2);
const settings = JSON.parse(settingsJson || "{}");
const report = { clients: [], commands: [], errors: [], stopped: 0 };
let configListener = null;
let trustListener = null;

const vscode = {
  workspace: {
    workspaceFolders: [{ uri: { fsPath: "/project" } }],
    isTrusted: !settings.untrusted,
    getConfiguration: (section) => ({
      get: (key, fallback) => {
        const value = settings[`${section}.${key}`];
        return value === undefined ? fallback : value;
      },
    }),
    onDidChangeConfiguration: (listener) => {
      configListener = listener;
      return { dispose() {} };
    },
    onDidGrantWorkspaceTrust: (listener) => {
      trustListener = listener;
      return { dispose() {} };
    },
  },
  window: {
    createOutputChannel: (name) => ({ name, dispose() {} }),
    showErrorMessage: (message) => report.errors.push(message),
  },
  commands: {
    registerCommand: (name, callback) => {
      report.commands.push(name);
      return { dispose() {} };
    },
  },
};

class LanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    report.clients.push({
      id,
      name,
      serverOptions,
      documentSelector: clientOptions.documentSelector,
      synchronize: clientOptions.synchronize ?? null,
    });
  }
  async start() {
    if (settings.failStart) throw new Error("spawn scenario-engine ENOENT");
  }
  async stop() {
    report.stopped += 1;
  }
}
const languageclient = { LanguageClient };

const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === "vscode") return vscode;
  if (request === "vscode-languageclient/node") return languageclient;
  return load.call(this, request, parent, isMain);
};

(async () => {
  const extension = require(path.resolve(extensionPath));
  const subscriptions = [];
  await extension.activate({ subscriptions });
  report.subscriptions = subscriptions.length;
  if (settings.untrusted) {
    // The user trusts the workspace (the settings' "untrusted" ends there).
    report.clientsBeforeTrust = report.clients.length;
    vscode.workspace.isTrusted = true;
    await trustListener();
  }
  if (configListener) {
    await configListener({ affectsConfiguration: (s) => s === "scenarioEngine.server" });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await extension.deactivate();
  process.stdout.write(JSON.stringify(report));
})();
