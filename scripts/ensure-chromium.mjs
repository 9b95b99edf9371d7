// Makes sure a headless Chromium is available for the browser tests (test/report.test.ts) and prints its path.
// Plain Node, no dependencies: it runs before the tests. Debian's own `chromium` package is used rather than a
// browser downloaded by playwright, so nothing is fetched from outside the distribution's mirrors.
//
//   node scripts/ensure-chromium.mjs   → prints e.g. /usr/bin/chromium (exit 0), or explains and exits 1.
//
// When it is missing and this is Debian and we are root, it runs
// `apt-get update && apt-get install -y --no-install-recommends chromium fonts-liberation` (the recommends
// pull in desktop services a headless test does not need; fonts-liberation gives pages readable text).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Where Debian's chromium package puts the browser (the path the tests launch). */
const CHROMIUM = '/usr/bin/chromium';

function fail(message) {
  console.error(`ensure-chromium: ${message}`);
  process.exit(1);
}

/** Runs a command quietly; on failure shows its captured output and exits. */
function quiet(cmd, args) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    fail(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})${output ? `:\n${output}` : ''}`);
  }
}

if (!existsSync(CHROMIUM)) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const isDebian = existsSync('/etc/debian_version');
  if (!isDebian || !isRoot) {
    fail(
      `${CHROMIUM} not found. Install Chromium (on Debian/Ubuntu: \`sudo apt-get install chromium\`)` +
        `${isDebian ? ' or run this script as root' : ''}; the browser checks of the report test need it.`,
    );
  }
  // stderr: stdout carries only the path, so callers can capture it.
  console.error('ensure-chromium: installing Debian package chromium (apt-get, a few minutes)…');
  quiet('apt-get', ['update', '-qq']);
  quiet('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium', 'fonts-liberation']);
  if (!existsSync(CHROMIUM)) fail(`apt-get installed chromium but ${CHROMIUM} is still missing`);
  console.error('ensure-chromium: chromium installed');
}
console.log(CHROMIUM);
