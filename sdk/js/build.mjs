#!/usr/bin/env node
/**
 * Build a JavaScript policy into an Airlock policy component:
 *
 * ```sh
 * node sdk/js/build.mjs policies/approval-rules-js -o /tmp/ar-js.wasm
 * npx airlock-policy-build .            # from a policy directory: writes ./NAME.wasm
 * ```
 *
 * 1. Bundle: an entry module that connects the contract's `host` imports
 *    and exports `judge` for the policy module (package.json `main`,
 *    default `policy.js`) is bundled with rolldown into one ES module, so
 *    bare imports (`airlock-policy-sdk`) resolve as they do under
 *    `node --test`.
 * 2. Componentize: ComponentizeJS splices bindings for the `policy` world
 *    of the contract into its StarlingMonkey (SpiderMonkey) engine and runs
 *    the bundle's top level under Wizer, so the engine starts up and the
 *    code is parsed at build time, not per instance. Every optional engine
 *    feature (stdio, random, clocks, http, fetch-event) is off: the
 *    component imports only `airlock:policy/host`, which is all Airlock
 *    links. So `console.log` goes nowhere (use `host.log`), `Date.now()` is
 *    frozen at build time (use `host.nowUnixMs`), `Math.random()` is
 *    deterministic, and there is no `fetch` or timer.
 *
 * Options: `-o FILE` (default `./NAME.wasm`, NAME from package.json),
 * `--wit DIR` (default: `wit/` beside this SDK, else the repository's
 * root `wit/`), `--aot` (weval ahead-of-time compilation of the
 * interpreter's inline caches: faster, larger, fetches weval on first use).
 *
 * @module
 */

import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { componentize } from '@bytecodealliance/componentize-js';
import { rolldown } from 'rolldown';

/** The contract's host interface: left to the component bindings, not bundled. */
const HOST_IMPORT = 'airlock:policy/host@0.2.0';
const ENTRY = '\0airlock-policy-entry';
/** Engine features a policy has no use for; each would add WASI imports Airlock does not link. */
const DISABLED_FEATURES = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];

const sdk = dirname(fileURLToPath(import.meta.url));

/**
 * Bundle the policy module with its entry module into one ES module text.
 *
 * @param {string} policyModule absolute path of the policy module
 */
export async function bundle(policyModule) {
  const glue = realpathSync(join(sdk, 'src', 'policy.js'));
  const entry = [
    `import * as imports from ${JSON.stringify(HOST_IMPORT)};`,
    `import { judgeExports } from ${JSON.stringify(glue)};`,
    `import policy from ${JSON.stringify(realpathSync(policyModule))};`,
    'export const judge = judgeExports(policy, imports);',
  ].join('\n');
  const build = await rolldown({
    input: ENTRY,
    external: [HOST_IMPORT],
    logLevel: 'warn',
    plugins: [
      {
        name: 'airlock-policy-entry',
        resolveId: (id) => (id === ENTRY ? ENTRY : null),
        load: (id) => (id === ENTRY ? entry : null),
      },
    ],
  });
  // Comments are for readers of the sources, not for the engine's snapshot.
  const { output } = await build.generate({ format: 'esm', comments: false });
  await build.close();
  return output[0].code;
}

/**
 * Build the policy in `directory` into a component.
 *
 * @param {string} directory
 * @param {{ wit?: string, aot?: boolean }} [options]
 * @returns {Promise<{ name: string, component: Uint8Array, bundleBytes: number }>}
 */
export async function buildPolicy(directory, { wit, aot = false } = {}) {
  const manifestPath = join(directory, 'package.json');
  const manifest = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, 'utf8')) : {};
  const name = (manifest.name ?? basename(resolve(directory))).replace(/^@[^/]+\//, '');
  const source = await bundle(resolve(directory, manifest.main ?? 'policy.js'));
  const witPath = wit ?? [join(sdk, 'wit'), join(sdk, '..', '..', 'wit')].find((path) => existsSync(path));
  if (!witPath) throw new Error(`no wit/ beside ${sdk}: pass --wit DIR`);
  // ComponentizeJS reads the module from a file, and maps the directory it
  // is in (or the working directory) into the build-time sandbox.
  const work = await mkdtemp(join(tmpdir(), 'airlock-js-'));
  try {
    const sourcePath = join(work, `${name}.js`);
    await writeFile(sourcePath, source);
    const { component } = await componentize({
      sourcePath,
      witPath: resolve(witPath),
      worldName: 'policy',
      disableFeatures: DISABLED_FEATURES,
      enableAot: aot,
    });
    return { name, component, bundleBytes: Buffer.byteLength(source) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      wit: { type: 'string' },
      aot: { type: 'boolean', default: false },
    },
  });
  const directory = positionals[0] ?? '.';
  const started = performance.now();
  const { name, component, bundleBytes } = await buildPolicy(directory, values);
  const output = values.output ?? `${name}.wasm`;
  await writeFile(output, component);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.error(`${output}: ${component.length} bytes (bundle ${bundleBytes} bytes) in ${seconds} s`);
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((error) => {
    console.error(`airlock-policy-build: ${error.message ?? error}`);
    process.exit(1);
  });
}
