import { defineConfig } from 'tsup';

export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    shims: true,
    // p-queue is ESM-only: bundle it so the CJS build also works on Node < 20.19 (no require(esm)).
    noExternal: ['p-queue', 'p-timeout', 'eventemitter3'],
  },
  {
    // The bridge forks this script to host pythonia (see src/bridge/host.ts).
    entry: { 'bridge-host': 'src/bridge/host.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
  },
  {
    // The CLI is ESM only; it is an executable, not an import target.
    entry: { cli: 'src/cli/main.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    banner: { js: '#!/usr/bin/env node' },
  },
]);
