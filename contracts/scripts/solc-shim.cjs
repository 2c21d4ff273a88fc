// A native-solc-compatible front for solc-js, so forge (and anything else that shells out to
// `solc`) compiles offline with the compiler from node_modules. Forge uses two calls:
//   solc --version                     -> parses the last line, "Version: 0.8.30+commit..."
//   solc [--base-path P] [--allow-paths P] [--include-path P] --standard-json  (input on stdin)
// Sources normally arrive with their `content` filled in; the import callback below only
// serves files under the allowed/base/include paths, so a malformed input cannot read
// arbitrary files.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const solc = require('solc');

const args = process.argv.slice(2);

function flagValues(name) {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === name && i + 1 < args.length) out.push(...args[i + 1].split(','));
    else if (a.startsWith(name + '=')) out.push(...a.slice(name.length + 1).split(','));
  }
  return out.filter((p) => p.length > 0).map((p) => path.resolve(p));
}

if (args.includes('--version') || args.includes('-v')) {
  // Same shape as the native binary; forge reads the last non-empty line.
  const v = solc.version().replace(/\.Emscripten\.clang$/, '');
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${v}.Linux.g++\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}

const roots = [...flagValues('--base-path'), ...flagValues('--allow-paths'), ...flagValues('--include-path'), process.cwd()];

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.join(r, importPath));
  for (const c of candidates) {
    const resolved = path.resolve(c);
    if (!roots.some((r) => resolved === r || resolved.startsWith(r + path.sep))) continue;
    try {
      return { contents: fs.readFileSync(resolved, 'utf8') };
    } catch {
      // try the next root
    }
  }
  return { error: `File not found: ${importPath}` };
}

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  const output = solc.compile(input, { import: findImports });
  process.stdout.write(output);
});
