#!/usr/bin/env node
// Validates Kubernetes manifests offline against the OpenAPI schemas of a current Kubernetes release (the JSON
// schema validators that the dev dependency kubernetes-models compiles from them), strictly: a field that the
// schema does not declare is an error too (as `kubectl apply` with server-side field validation, or kubeconform
// -strict), so a misspelt or misplaced key fails instead of being dropped by the API server.
//   node scripts/helm.mjs template spot deploy/helm/spotinference | node scripts/k8s-validate.mjs
//   node scripts/k8s-validate.mjs a.yaml b.yaml
// Prints one line per object, the errors under it; exits 1 if any object is invalid or of an unknown kind.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/** kubernetes-models' schema name of apiVersion + kind: apps/v1 Deployment -> IoK8sApiAppsV1Deployment. */
function schemaName(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion];
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  return `IoK8sApi${cap(group.split('.')[0])}${cap(version)}${kind}`;
}

/**
 * Runs the schema's validator over a view of `doc` that records which keys it reads. The compiled validators read
 * every property their schema declares (`data.x !== undefined`) and enumerate the keys of maps (labels, data...),
 * so a key of an object that was read from, never enumerated, and never read itself is one the schema lacks.
 * Objects the validator never reads from (free-form fields) are not judged.
 */
function validateStrict(validate, doc) {
  const reads = new Map();
  const enumerated = new Set();
  const proxies = new WeakMap();
  const view = (value) => {
    if (value === null || typeof value !== 'object') return value;
    let proxy = proxies.get(value);
    if (proxy === undefined) {
      proxy = new Proxy(value, {
        get(target, key, receiver) {
          if (typeof key === 'string') {
            let keys = reads.get(target);
            if (keys === undefined) reads.set(target, (keys = new Set()));
            keys.add(key);
          }
          return view(Reflect.get(target, key, receiver));
        },
        has(target, key) {
          if (typeof key === 'string') {
            let keys = reads.get(target);
            if (keys === undefined) reads.set(target, (keys = new Set()));
            keys.add(key);
          }
          return Reflect.has(target, key);
        },
        ownKeys(target) {
          enumerated.add(target);
          return Reflect.ownKeys(target);
        },
      });
      proxies.set(value, proxy);
    }
    return proxy;
  };
  const valid = validate(view(doc));
  const errors = (valid ? [] : validate.errors ?? []).map((e) => `${e.instancePath || '/'}: ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
  const walk = (value, at) => {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${at}/${i}`));
    const read = reads.get(value);
    for (const [key, child] of Object.entries(value)) {
      if (read !== undefined && !enumerated.has(value) && !read.has(key)) errors.push(`${at}/${key}: unknown field (not in the schema)`);
      else walk(child, `${at}/${key}`);
    }
  };
  walk(doc, '');
  return errors;
}

/**
 * Validates every object of a multi-document YAML text.
 * @returns one entry per object: its name and its errors (empty when valid).
 */
export async function validateManifests(text, source = 'stdin') {
  const results = [];
  for (const [i, d] of parseAllDocuments(text).entries()) {
    if (d.errors.length > 0) {
      results.push({ name: `${source} document ${i + 1}`, errors: d.errors.map((e) => `invalid YAML: ${e.message}`) });
      continue;
    }
    const doc = d.toJS();
    if (doc === null || doc === undefined) continue;
    const name = `${doc.kind ?? '?'} ${doc.metadata?.name ?? '?'} (${source} document ${i + 1})`;
    if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
      results.push({ name, errors: ['apiVersion and kind are required'] });
      continue;
    }
    let validate;
    try {
      ({ validate } = await import(`kubernetes-models/_schemas/${schemaName(doc.apiVersion, doc.kind)}`));
    } catch {
      results.push({ name, errors: [`no schema for ${doc.apiVersion} ${doc.kind} in this Kubernetes release`] });
      continue;
    }
    results.push({ name, errors: validateStrict(validate, doc) });
  }
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const files = process.argv.slice(2);
  const inputs = files.length > 0 ? files.map((f) => [f, readFileSync(f, 'utf8')]) : [['stdin', readFileSync(0, 'utf8')]];
  let failed = 0;
  let objects = 0;
  for (const [source, text] of inputs) {
    for (const r of await validateManifests(text, source)) {
      objects++;
      if (r.errors.length > 0) failed++;
      process.stdout.write(`${r.errors.length === 0 ? 'valid  ' : 'INVALID'} ${r.name}\n${r.errors.map((e) => `    ${e}\n`).join('')}`);
    }
  }
  process.stdout.write(`${objects - failed} valid, ${failed} invalid\n`);
  process.exit(failed > 0 || objects === 0 ? 1 : 0);
}
