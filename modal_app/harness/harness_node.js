'use strict';
// Node worker of the test harness (JavaScript and TypeScript; runs inside the sandbox).
//
//   node harness_node.js compile CONFIG_JSON
//       Type-check and compile a TypeScript solution with the `typescript`
//       package (CommonJS, ES2022, strict off, moduleDetection "force").  Any
//       error diagnostic is a compile error.  Prints one JSON report on stdout:
//       {"ok": true, "file": compiled.js} or {"ok": false, "message": text}.
//       No candidate code runs in this step.
//
//   node harness_node.js check-module CONFIG_JSON
//       Syntax-check a JavaScript *program* that uses ES module syntax (Node
//       runs it as a module, but `node --check` misses its syntax errors).
//
//   node harness_node.js worker CONFIG_JSON CTL_FD RES_FD
//       Load the solution once and call its entry point per case: one case
//       per line on CTL_FD, one JSON message per line on RES_FD.  The
//       solution runs as a CommonJS function body (vm.compileFunction) with
//       a trailer that captures the top-level binding named like the entry
//       point, so exporting it is optional; module.exports / exports.default
//       are looked at next.  ES module syntax (import/export) in a .js
//       solution is transpiled to CommonJS with TypeScript's transpileModule
//       when the compiler is available.
//
// The candidate's console output goes to this process's stdout/stderr, which
// the supervisor attributes to the running case; results go to RES_FD only.

const fs = require('fs');
const path = require('path');
const util = require('util');
const vm = require('vm');
const Module = require('module');

const HARNESS_FILE = __filename;

function main() {
  const [command, configText, ctlFd, resFd] = process.argv.slice(2);
  const config = JSON.parse(configText);
  if (command === 'compile') {
    process.stdout.write(JSON.stringify(compileTypeScript(config)) + '\n');
  } else if (command === 'check-module') {
    process.stdout.write(JSON.stringify(checkModule(config)) + '\n');
  } else if (command === 'worker') {
    worker(config, Number(ctlFd), Number(resFd));
  } else {
    throw new Error(`unknown command ${command}`);
  }
}

// -- TypeScript ------------------------------------------------------------------

// Shorthand ambient modules: every import from them is `any`.
const NODE_MODULES = [
  'assert', 'buffer', 'child_process', 'crypto', 'events', 'fs', 'fs/promises', 'os', 'path',
  'perf_hooks', 'process', 'readline', 'stream', 'string_decoder', 'timers', 'url', 'util',
  'worker_threads', 'zlib',
];

const NODE_SHIM = `
declare var require: any;
declare var module: any;
declare var exports: any;
declare var process: any;
declare var Buffer: any;
declare var __dirname: string;
declare var __filename: string;
declare var console: any;
declare function setTimeout(handler: (...args: any[]) => void, ms?: number, ...args: any[]): any;
declare function clearTimeout(id: any): void;
declare function setInterval(handler: (...args: any[]) => void, ms?: number, ...args: any[]): any;
declare function clearInterval(id: any): void;
declare function setImmediate(handler: (...args: any[]) => void, ...args: any[]): any;
declare function queueMicrotask(callback: () => void): void;
declare function structuredClone<T>(value: T): T;
declare class TextEncoder { encode(input?: string): Uint8Array; }
declare class TextDecoder { constructor(label?: string); decode(input?: any): string; }
declare module "node:*";
${NODE_MODULES.map((name) => `declare module "${name}";`).join('\n')}
`;

const NODE_USE = /\b(require|process|Buffer|__dirname|__filename|NodeJS|global|module|exports)\b|^\s*(import|export)\b[^\n]*\bfrom\b|\bimport\s*\(/m;

function usesNode(file) {
  try {
    return NODE_USE.test(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    return true;
  }
}

function compileTypeScript(config) {
  const ts = require(config.typescript);
  const rootDir = config.solution.startsWith(config.cwd + '/')
    ? config.cwd
    : path.dirname(config.solution);
  const options = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10 ?? ts.ModuleResolutionKind.NodeJs,
    moduleDetection: ts.ModuleDetectionKind.Force,
    lib: ['lib.es2022.d.ts'],
    strict: false,
    esModuleInterop: true,
    resolveJsonModule: true,
    skipLibCheck: true,
    noEmitOnError: true,
    sourceMap: true,
    newLine: ts.NewLineKind.LineFeed,
    rootDir,
    outDir: config.outDir,
  };
  const rootNames = [config.solution];
  if (config.typeRoots && usesNode(config.solution)) {
    options.types = ['node'];
    options.typeRoots = [config.typeRoots];
  } else {
    // Loading @types/node costs about a second; a solution that uses nothing
    // of Node but console and timers gets loose declarations of the globals
    // instead (also the fallback when @types/node is not installed).
    options.types = [];
    fs.writeFileSync(config.shim, NODE_SHIM);
    rootNames.push(config.shim);
  }
  const program = ts.createProgram(rootNames, options);
  const host = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => config.cwd,
    getNewLine: () => '\n',
  };
  const errors = (list) => list.filter((d) => d.category === ts.DiagnosticCategory.Error);
  let diagnostics = errors(ts.getPreEmitDiagnostics(program));
  if (diagnostics.length === 0) {
    diagnostics = errors(program.emit().diagnostics);
  }
  if (diagnostics.length > 0) {
    return { ok: false, message: ts.formatDiagnostics(diagnostics, host).trim() };
  }
  const relative = path.relative(rootDir, config.solution).replace(/\.(c|m)?tsx?$/, '.js');
  const file = path.join(config.outDir, relative.endsWith('.js') ? relative : relative + '.js');
  if (!fs.existsSync(file)) {
    return { ok: false, message: `TypeScript emitted nothing for ${config.solution}` };
  }
  return { ok: true, file };
}

// -- worker ----------------------------------------------------------------------

function worker(config, ctlFd, resFd) {
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', '1000');
  } catch (e) {
    // not fatal: the OOM killer may pick another process first
  }
  // Reopened through /proc: the new fds are close-on-exec, so the candidate's
  // child processes do not inherit the harness's pipes.
  ctlFd = cloexec(ctlFd, 'r');
  resFd = cloexec(resFd, 'w');
  const send = (message) => {
    const data = Buffer.from(JSON.stringify(message) + '\n');
    let offset = 0;
    while (offset < data.length) offset += fs.writeSync(resFd, data, offset);
  };
  usePositions(config);
  const loaded = load(config);
  if (loaded.error) {
    send({ t: 'load_error', ...loaded.error });
    process.exit(0);
  }
  send({ t: 'ready' });
  const entry = loaded.entry;
  const input = fs.createReadStream(null, { fd: ctlFd, highWaterMark: 1 << 16 });
  let buffered = '';
  let queue = Promise.resolve();
  input.setEncoding('utf8');
  input.on('data', (chunk) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      const request = JSON.parse(line);
      queue = queue.then(() => runCase(entry, request)).then(send);
    }
  });
  input.on('end', () => queue.then(() => process.exit(0)));
}

function cloexec(fd, flags) {
  try {
    const reopened = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return reopened;
  } catch (e) {
    return fd;
  }
}

function load(config) {
  let source;
  try {
    source = fs.readFileSync(config.file, 'utf8');
  } catch (e) {
    return { error: { kind: 'compile', error: `cannot read ${config.solution}: ${e.message}` } };
  }
  if (source.startsWith('#!')) source = '//' + source.slice(2);
  let body;
  try {
    body = compile(source, config);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const transpiled = ESM_SYNTAX.test(source) ? transpile(source, config) : null;
    if (!transpiled) {
      return { error: { kind: 'compile', error: syntaxError(source, config, e) } };
    }
    if (transpiled.errors) return { error: { kind: 'compile', error: transpiled.errors } };
    transpiled.map.sources = [config.solution];
    transpiled.map.sourceRoot = '';
    usePositions(config, transpiled.map);
    body = compile(transpiled.code, config);
  }
  const module = { exports: {}, filename: config.solution, id: '.', loaded: false };
  let captured;
  try {
    body.call(
      module.exports,
      module.exports,
      Module.createRequire(config.file),
      module,
      config.solution,
      path.dirname(config.solution),
      (value) => {
        captured = value;
      },
    );
  } catch (e) {
    return {
      error: {
        kind: 'runtime',
        error: describe(e),
        traceback: trace(e),
        memory: isMemoryError(e),
      },
    };
  }
  module.loaded = true;
  const exported = module.exports;
  const candidates = [
    captured,
    exported && exported[config.entry],
    exported && exported.default && exported.default[config.entry],
    exported && exported.default,
    exported,
  ];
  const entry = candidates.find((c) => typeof c === 'function');
  if (!entry) {
    const name = path.basename(config.solution);
    return {
      error: { kind: 'compile', error: `${name}: no top-level function named '${config.entry}'` },
    };
  }
  return { entry };
}

const PARAMS = ['exports', 'require', 'module', '__filename', '__dirname', '__ilmCapture'];

function compile(source, config) {
  const trailer =
    `\n;__ilmCapture(typeof ${config.entry} === 'function' ? ${config.entry} : undefined);\n`;
  try {
    return vm.compileFunction(source + trailer, PARAMS, { filename: config.solution });
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    // Report the error of the candidate's own text, not of our trailer.
    vm.compileFunction(source, PARAMS, { filename: config.solution });
    throw e;
  }
}

// ES module syntax (import/export) in a .js solution, to CommonJS; null without
// the compiler.  Returns {code, map, errors}: syntax errors as formatted text.
function transpile(source, config) {
  if (!config.typescript) return null;
  const ts = require(config.typescript);
  const result = ts.transpileModule(source, {
    fileName: config.solution,
    reportDiagnostics: true,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      sourceMap: true,
      allowJs: true,
    },
  });
  const errors = result.diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  const host = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => config.cwd,
    getNewLine: () => '\n',
  };
  const code = result.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
  return {
    code,
    map: JSON.parse(result.sourceMapText),
    errors: errors.length ? ts.formatDiagnostics(errors, host).trim() : null,
  };
}

const ESM_SYNTAX = /^\s*(import|export)\b/m;

// Programs using ES module syntax run as they are (Node 20.19+ and 22+ detect
// module syntax), but `node --check` does not report their syntax errors: the
// compiler's syntactic diagnostics do.  No candidate code runs.
function checkModule(config) {
  const source = fs.readFileSync(config.solution, 'utf8');
  if (!ESM_SYNTAX.test(source) || !config.typescript) return { ok: true };
  const ts = require(config.typescript);
  const result = ts.transpileModule(source, {
    fileName: config.solution,
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const errors = result.diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length === 0) return { ok: true };
  const host = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => config.cwd,
    getNewLine: () => '\n',
  };
  return { ok: false, message: ts.formatDiagnostics(errors, host).trim() };
}

function syntaxError(source, config, error) {
  const stack = String(error.stack || error);
  const lines = stack.split('\n');
  const at = lines.findIndex((line) => /^\s+at /.test(line));
  let text = (at >= 0 ? lines.slice(0, at) : lines).join('\n').trim();
  if (/^\s*(import|export)\b/m.test(source) && !config.typescript) {
    text += '\n(ES module syntax needs the TypeScript compiler in the sandbox; use module.exports)';
  }
  return text.split(config.solution).join(path.basename(config.solution));
}

async function runCase(entry, request) {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e6;
  let value;
  try {
    value = entry(...request.args);
    if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
      value = await value;
    }
  } catch (e) {
    return failure(request.i, e, elapsed());
  }
  const ms = elapsed();
  let text;
  try {
    text = encode(value);
  } catch (e) {
    const error = `the return value is not JSON-serializable: ${e && e.message}`;
    return { t: 'result', i: request.i, ok: false, error, ms };
  }
  return { t: 'result', i: request.i, ok: true, value: text, ms };
}

function encode(value) {
  const text = JSON.stringify(value, (key, v) => {
    if (typeof v === 'number' && !Number.isFinite(v)) {
      throw new TypeError(`${v} cannot be represented in JSON`);
    }
    if (typeof v === 'bigint') {
      if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
        return Number(v);
      }
      throw new TypeError(`BigInt ${v} is outside the safe integer range`);
    }
    if (v instanceof Set) return Array.from(v);
    if (v instanceof Map) return Object.fromEntries(v);
    return v;
  });
  return text === undefined ? 'null' : text;
}

function failure(index, e, ms) {
  return {
    t: 'result',
    i: index,
    ok: false,
    error: describe(e),
    traceback: trace(e),
    memory: isMemoryError(e),
    ms,
  };
}

function describe(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'message' in e && 'name' in e)) {
    return `${e.name}: ${e.message}`;
  }
  return `Uncaught ${util.inspect(e)}`;
}

let positions = null;

// TypeScript: stack positions in the compiled JavaScript, mapped back to the
// candidate's .ts lines through the source map the compile step wrote.
function usePositions(config, payload) {
  const mapFile = config.file + '.map';
  if (!payload && (config.file === config.solution || !fs.existsSync(mapFile))) return;
  try {
    const map = new Module.SourceMap(payload || JSON.parse(fs.readFileSync(mapFile, 'utf8')));
    const escaped = config.solution.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const pattern = new RegExp(escaped + ':(\\d+):(\\d+)', 'g');
    positions = (text) =>
      text.replace(pattern, (whole, line, column) => {
        const found = map.findEntry(Number(line) - 1, Number(column) - 1);
        if (!found || found.originalLine === undefined) return whole;
        return `${config.solution}:${found.originalLine + 1}:${found.originalColumn + 1}`;
      });
  } catch (e) {
    positions = null;
  }
}

function trace(e) {
  if (!e || typeof e.stack !== 'string') return null;
  const text = e.stack
    .split('\n')
    .filter((line) => !line.includes(HARNESS_FILE) && !line.includes('node:internal'))
    .join('\n');
  return positions ? positions(text) : text;
}

function isMemoryError(e) {
  return (
    e instanceof RangeError &&
    /allocation failed|out of memory|Array buffer allocation/i.test(String(e.message))
  );
}

main();
