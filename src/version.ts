import pkg from '../package.json' with { type: 'json' };

/** The arc-ttft package version. */
export const VERSION: string = pkg.version;
