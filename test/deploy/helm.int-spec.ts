import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { configSchema } from '@spot/config';
import { parseTiersFile } from '@spot/tiers';
import { parseAllDocuments } from 'yaml';

// The Helm chart, checked offline: rendered by a real Helm (scripts/helm.mjs), every object validated strictly
// against the Kubernetes schemas of a current release (scripts/k8s-validate.mjs), then read for what the apps need.

const root = path.resolve(__dirname, '../..');
const chart = path.join(root, 'deploy/helm/spotinference');
const production = path.join(chart, 'values-production.yaml');
const helmHome = mkdtempSync(path.join(tmpdir(), 'spot-helm-'));
/** The newest Kubernetes minor that the schemas of kubernetes-models describe. */
const KUBE_VERSION = '1.34.0';

afterAll(() => rmSync(helmHome, { recursive: true, force: true }));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function node(script: string, args: string[], input?: string): Run {
  const env = { ...process.env, HELM_CACHE_HOME: helmHome, HELM_CONFIG_HOME: helmHome, HELM_DATA_HOME: helmHome };
  const run = spawnSync(process.execPath, [path.join(root, 'scripts', script), ...args], { cwd: root, env, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.error) throw run.error;
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function helm(args: string[]): Run {
  return node('helm.mjs', args);
}

function template(dir: string, ...args: string[]): Run {
  return helm(['template', 'spot', dir, '--namespace', 'spotinference', '--kube-version', KUBE_VERSION, ...args]);
}

// Kubernetes objects, loosely typed: the schemas have checked their shapes already.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any;

function render(...args: string[]): Obj[] {
  const run = template(chart, ...args);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return parseAllDocuments(run.stdout)
    .map((d) => d.toJS() as Obj)
    .filter((o) => o !== null);
}

function find(objects: Obj[], kind: string, component: string): Obj {
  const found = objects.filter((o) => o.kind === kind && o.metadata.labels?.['app.kubernetes.io/component'] === component);
  expect(found).toHaveLength(1);
  return found[0];
}

function env(container: Obj): Map<string, Obj> {
  return new Map((container.env as Obj[]).map((e) => [e.name as string, e]));
}

const KNOWN_KINDS = ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'Job', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount'];

describe.each([
  ['default values', [] as string[]],
  ['values-production.yaml', ['-f', production]],
])('the Helm chart with %s', (_name, valuesArgs) => {
  const objects = render(...valuesArgs);
  const gateway = find(objects, 'Deployment', 'gateway');
  const gatewayPod = gateway.spec.template.spec;
  const gatewayContainer = gatewayPod.containers[0];

  it('passes helm lint --strict (values.schema.json included)', () => {
    const run = helm(['lint', '--strict', chart, '--kube-version', KUBE_VERSION, ...valuesArgs]);
    expect(run.stdout).toContain('0 chart(s) failed');
    expect(run.status).toBe(0);
  });

  it('renders objects that all validate strictly against the Kubernetes schemas', () => {
    const rendered = template(chart, ...valuesArgs).stdout;
    const run = node('k8s-validate.mjs', [], rendered);
    expect(run.stdout).toContain(`${objects.length} valid, 0 invalid`);
    expect(run.status).toBe(0);
    expect(new Set(objects.map((o) => o.kind))).toEqual(new Set(KNOWN_KINDS.filter((k) => objects.some((o) => o.kind === k))));
    for (const kind of ['ConfigMap', 'Deployment', 'Service', 'Job', 'PodDisruptionBudget']) expect(objects.some((o) => o.kind === kind)).toBe(true);
  });

  it('gives every app a tiers file the apps accept, at TIERS_FILE', () => {
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-tiers'));
    const tiers = parseTiersFile(configMap.data['tiers.yaml'], 'the tiers ConfigMap');
    expect(tiers.tiers.length).toBeGreaterThan(0);
    for (const component of ['gateway', 'console', 'worker']) {
      const pod = find(objects, 'Deployment', component).spec.template.spec;
      const container = pod.containers[0];
      const file = env(container).get('TIERS_FILE').value as string;
      const mount = container.volumeMounts.find((m: Obj) => file.startsWith(`${m.mountPath}/`));
      const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
      expect(volume.configMap.name).toBe(configMap.metadata.name);
      expect(Object.keys(configMap.data)).toContain(path.basename(file));
    }
  });

  it('passes only variables of libs/config, credentials from the existing Secret', () => {
    const known = new Set(Object.keys(configSchema.shape));
    // set by the chart for Node itself, or extraEnv of the production values
    const notConfig = new Set(['NODE_EXTRA_CA_CERTS', 'POD_NAME']);
    const unknown: string[] = [];
    for (const o of objects.filter((x) => x.kind === 'Deployment' || x.kind === 'Job')) {
      for (const container of o.spec.template.spec.containers) {
        for (const [name, e] of env(container)) {
          if (!notConfig.has(name) && !known.has(name)) unknown.push(`${o.metadata.name}: ${name}`);
          if (e.valueFrom?.secretKeyRef) {
            expect(e.valueFrom.secretKeyRef.name).toBe(valuesArgs.length === 0 ? 'spotinference' : 'spotinference-credentials');
            expect(e.valueFrom.secretKeyRef.optional ?? false).toBe(!['DATABASE_URL', 'REDIS_URL'].includes(name));
          }
        }
      }
    }
    expect(unknown).toEqual([]);
    // the gateway never sees the Stripe or GitHub credentials
    expect([...env(gatewayContainer).keys()].filter((n) => /STRIPE|GITHUB/.test(n))).toEqual([]);
  });

  it('drains the gateway: readiness /readyz, liveness /healthz, a preStop sleep and a grace period above SHUTDOWN_GRACE_MS', () => {
    const port = gatewayContainer.ports.find((p: Obj) => p.name === 'http').containerPort;
    expect(String(port)).toBe(env(gatewayContainer).get('GATEWAY_PORT').value);
    expect(gatewayContainer.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(gatewayContainer.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    const sleep = Number(gatewayContainer.lifecycle.preStop.exec.command[1]);
    expect(gatewayContainer.lifecycle.preStop.exec.command[0]).toBe('sleep');
    expect(sleep).toBeGreaterThan(0);
    const graceMs = Number(env(gatewayContainer).get('SHUTDOWN_GRACE_MS').value);
    // after the preStop sleep, SIGTERM: streams get SHUTDOWN_GRACE_MS, a multi-process primary 15 s more
    expect(gatewayPod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(sleep * 1000 + graceMs + 15_000);
    const worker = find(objects, 'Deployment', 'worker').spec.template.spec;
    expect(worker.terminationGracePeriodSeconds * 1000).toBeGreaterThan(Number(env(worker.containers[0]).get('SHUTDOWN_GRACE_MS').value));
  });

  it('keeps the usage spool on a volume and runs every container as non-root on a read-only root filesystem', () => {
    const spool = env(gatewayContainer).get('USAGE_SPOOL_DIR').value as string;
    const mount = gatewayContainer.volumeMounts.find((m: Obj) => spool.startsWith(`${m.mountPath}/`));
    const volume = gatewayPod.volumes.find((v: Obj) => v.name === mount.name);
    expect(volume.emptyDir ?? volume.persistentVolumeClaim).toBeDefined();
    expect(mount.readOnly ?? false).toBe(false);
    for (const o of objects.filter((x) => x.kind === 'Deployment' || x.kind === 'Job')) {
      const pod = o.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      for (const c of pod.containers) {
        expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
        expect(c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp')).toBe(true);
      }
    }
  });

  it('runs what the image holds: entry points that the build writes, the db:migrate command as a pre-install/pre-upgrade hook', () => {
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    for (const dir of ['dist', 'scripts', 'prisma', 'node_modules']) expect(dockerfile).toMatch(new RegExp(`COPY --from=build /app/${dir} \\./${dir}`));
    for (const o of objects.filter((x) => x.kind === 'Deployment' || x.kind === 'Job')) {
      const [bin, entry] = o.spec.template.spec.containers[0].command as string[];
      expect(bin).toBe('node');
      expect(existsSync(path.join(root, entry))).toBe(true); // dist/ is built before the e2e project runs
    }
    const job = find(objects, 'Job', 'migrate');
    expect(job.metadata.annotations['helm.sh/hook'].split(',').sort()).toEqual(['pre-install', 'pre-upgrade']);
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(job.spec.template.spec.containers[0].command.join(' ')).toBe(pkg.scripts['db:migrate']);
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
  });

  it('scales the gateway on CPU and keeps it available through voluntary disruptions', () => {
    const hpa = find(objects, 'HorizontalPodAutoscaler', 'gateway');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: gateway.metadata.name });
    expect(hpa.spec.metrics).toEqual([{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: expect.any(Number) } } }]);
    expect(gateway.spec.replicas).toBeUndefined(); // the HPA owns the count; an upgrade must not reset it
    expect(gatewayContainer.resources.requests.cpu).toBeDefined(); // utilization is a share of the request
    const pdb = find(objects, 'PodDisruptionBudget', 'gateway');
    expect(gateway.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
    const service = find(objects, 'Service', 'gateway');
    expect(gateway.spec.template.metadata.labels).toMatchObject(service.spec.selector);
  });
});

describe('the Helm chart with the kubernetes wake driver (values-production.yaml)', () => {
  const objects = render('-f', production);

  it('lets the gateway and the worker scale only the named workloads, through their scale subresource', () => {
    const role = objects.find((o) => o.kind === 'Role');
    const binding = objects.find((o) => o.kind === 'RoleBinding');
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.metadata.namespace).toBe(role.metadata.namespace);
    for (const rule of role.rules as Obj[]) {
      expect(rule.resourceNames.length).toBeGreaterThan(0);
      for (const resource of rule.resources as string[]) {
        expect(['deployments/scale', 'statefulsets/scale', 'deployments', 'statefulsets']).toContain(resource);
        expect(rule.verbs.sort()).toEqual(resource.endsWith('/scale') ? ['get', 'patch'] : ['get']);
      }
    }
    const [subject] = binding.subjects as Obj[];
    for (const component of ['gateway', 'worker']) {
      const pod = find(objects, 'Deployment', component).spec.template.spec;
      expect(pod.serviceAccountName).toBe(subject.name);
      expect(pod.automountServiceAccountToken).toBe(true);
    }
    expect(find(objects, 'Deployment', 'console').spec.template.spec.automountServiceAccountToken).toBe(false);
    // every kubernetes-driven tier of the tiers file is one the Role covers
    const tiers = parseTiersFile(objects.find((o) => o.kind === 'ConfigMap').data['tiers.yaml'], 'tiers');
    const driven = tiers.tiers.filter((t) => t.wake?.driver === 'kubernetes');
    expect(driven.length).toBeGreaterThan(0);
    for (const t of driven) {
      expect(t.wake!.namespace).toBe(role.metadata.namespace);
      const plural = t.wake!.kind === 'StatefulSet' ? 'statefulsets/scale' : 'deployments/scale';
      expect(role.rules.find((r: Obj) => r.resources.includes(plural)).resourceNames).toContain(t.wake!.name);
    }
  });
});

describe('a broken chart fails the check', () => {
  it('a misspelt field, a wrong type, an unknown kind: each object named with its error', () => {
    const manifest = [
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: a, labels: { any/label: ok } }\nspec:\n  selector: { matchLabels: { a: b } }',
      '  template:\n    metadata: { lables: { a: b } }\n    spec:\n      containers:\n        - name: c\n          image: i',
      '          readinesProbe: { httpGet: { path: /, port: 80 } }\n          ports: [{ containerPort: "80" }]',
      '---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: b }\ndata: { any-key: fine }',
      '---\napiVersion: v1\nkind: Servic\nmetadata: { name: c }\n',
    ].join('\n');
    const run = node('k8s-validate.mjs', [], manifest);
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('/spec/template/metadata/lables: unknown field');
    expect(run.stdout).toContain('/spec/template/spec/containers/0/readinesProbe: unknown field');
    expect(run.stdout).toMatch(/containers\/0\/ports\/0\/containerPort: type .*integer/);
    expect(run.stdout).toContain('valid   ConfigMap b');
    expect(run.stdout).toContain('no schema for v1 Servic');
    expect(run.stdout).toContain('1 valid, 2 invalid');
  });

  it('a template with a misplaced field, or that is not YAML, fails', () => {
    const copy = mkdtempSync(path.join(tmpdir(), 'spot-chart-'));
    try {
      cpSync(chart, copy, { recursive: true });
      const file = path.join(copy, 'templates/gateway-deployment.yaml');
      const good = readFileSync(file, 'utf8');
      writeFileSync(file, good.replace('readinessProbe:', 'readinesProbe:'));
      const validation = node('k8s-validate.mjs', [], template(copy).stdout);
      expect(validation.status).toBe(1);
      expect(validation.stdout).toMatch(/INVALID Deployment spot-spotinference-gateway[^\n]*\n\s+\/spec\/template\/spec\/containers\/0\/readinesProbe: unknown field/);
      writeFileSync(file, good.replace('          ports:\n', '          ports:\n  - oops\n'));
      const broken = template(copy);
      expect(broken.status).not.toBe(0);
      expect(broken.stderr).toMatch(/gateway-deployment\.yaml|YAML/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('values that would break the drain, unknown values, and a wake driver without workloads are refused', () => {
    const short = template(chart, '--set', 'gateway.terminationGracePeriodSeconds=30');
    expect(short.status).not.toBe(0);
    expect(short.stderr).toContain('gateway.terminationGracePeriodSeconds: 30 is too short');
    const typo = template(chart, '--set', 'gateway.procesess=2');
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toContain("additional properties 'procesess' not allowed");
    const noTargets = template(chart, '--set', 'wakeDriver.kubernetes.enabled=true');
    expect(noTargets.status).not.toBe(0);
    expect(noTargets.stderr).toContain('wakeDriver.kubernetes.enabled: name the Deployments or StatefulSets');
    const noSecret = template(chart, '--set', 'secrets.existingSecret=');
    expect(noSecret.status).not.toBe(0);
  });
});
