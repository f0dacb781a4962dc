import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelCatalog } from './model-catalog';
import { loadTiersFile, parseTiersFile, TiersFileError } from './tiers-file';

const valid = `
tiers:
  - name: od
    kind: on-demand
    endpoints: [http://127.0.0.1:8091/]
    models:
      - id: llama-3.1-8b
        price: { input_per_mtok: 0.10, output_per_mtok: 0.20 }
  - name: spot-a
    kind: spot
    endpoints: [http://127.0.0.1:8090]
    models:
      - id: llama-3.1-8b
        upstream: meta-llama/Llama-3.1-8B-Instruct
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
`;

describe('tiers file', () => {
  it('parses a valid file and orders routes spot first', () => {
    const catalog = new ModelCatalog(parseTiersFile(valid, 't.yaml'));
    const routes = catalog.routesFor('llama-3.1-8b')!;
    expect(routes.map((r) => r.tier)).toEqual(['spot-a', 'od']);
    expect(routes[0].upstreamModel).toBe('meta-llama/Llama-3.1-8B-Instruct');
    expect(routes[1].upstreamModel).toBe('llama-3.1-8b');
    expect(routes[1].endpoints).toEqual(['http://127.0.0.1:8091']);
    expect(catalog.routesFor('nope')).toBeUndefined();
  });

  it('names the file and the offending field', () => {
    const bad = valid.replace('kind: spot', 'kind: cheap');
    expect(() => parseTiersFile(bad, 'tiers.yaml')).toThrow(TiersFileError);
    expect(() => parseTiersFile(bad, 'tiers.yaml')).toThrow(/tiers\.yaml: invalid tiers file:\n {2}tiers\[1\]\.kind: /);
    const noPrice = valid.replace('price: { input_per_mtok: 0.10, output_per_mtok: 0.20 }', 'price: { input_per_mtok: -1, output_per_mtok: 0.20 }');
    expect(() => parseTiersFile(noPrice, 'x.yaml')).toThrow(/tiers\[0\]\.models\[0\]\.price\.input_per_mtok/);
    const badUrl = valid.replace('http://127.0.0.1:8090', 'ftp://x');
    expect(() => parseTiersFile(badUrl, 'x.yaml')).toThrow(/tiers\[1\]\.endpoints\[0\]: expected an http\(s\) base URL/);
    const typo = valid.replace('endpoints: [http://127.0.0.1:8090]', 'endpoint: [http://127.0.0.1:8090]');
    expect(() => parseTiersFile(typo, 'x.yaml')).toThrow(/tiers\[1\]/);
  });

  it('rejects duplicate tiers, duplicate models, bad YAML and a missing file', () => {
    const dup = valid.replace('name: od', 'name: spot-a');
    expect(() => parseTiersFile(dup, 'x.yaml')).toThrow(/tiers\[1\]\.name: duplicate tier name "spot-a"/);
    expect(() => parseTiersFile('tiers: [', 'x.yaml')).toThrow(/x\.yaml: invalid YAML/);
    expect(() => loadTiersFile('/nonexistent/tiers.yaml')).toThrow(/\/nonexistent\/tiers\.yaml: cannot read tiers file \(ENOENT\)/);
  });

  it('takes a wake driver with its fields, and names what a driver is missing', () => {
    const sleepy = valid.replace(
      'kind: spot\n    endpoints: [http://127.0.0.1:8090]',
      'kind: spot\n    endpoints: [http://127.0.0.1:8090]\n    wake: { driver: vllm-sleep, deadline_s: 30 }\n    idle_sleep_s: 300\n    fallback_while_waking: false',
    );
    const catalog = new ModelCatalog(parseTiersFile(sleepy, 't.yaml'));
    const spot = catalog.routesFor('llama-3.1-8b')![0];
    expect(spot.wake).toMatchObject({ driver: 'vllm-sleep', deadline_s: 30 });
    expect(spot.fallbackWhileWaking).toBe(false);
    expect(catalog.routesFor('llama-3.1-8b')![1]).toMatchObject({ wake: null, fallbackWhileWaking: true });
    expect(catalog.tiers().find((t) => t.name === 'spot-a')).toMatchObject({ idleSleepS: 300 });

    const k8s = valid.replace('kind: spot\n', 'kind: spot\n    wake: { driver: kubernetes, api_server: "https://k8s:6443" }\n');
    expect(() => parseTiersFile(k8s, 'x.yaml')).toThrow(/tiers\[1\]\.wake\.namespace: required by the kubernetes driver/);
    const both = valid.replace('kind: spot\n', 'kind: spot\n    wake: { driver: kubernetes, api_server: "https://k8s:6443", namespace: gpu, name: v, token: t, token_file: /f }\n');
    expect(() => parseTiersFile(both, 'x.yaml')).toThrow(/tiers\[1\]\.wake\.token_file: give token or token_file, not both/);
    const hook = valid.replace('kind: spot\n', 'kind: spot\n    wake: { driver: webhook }\n');
    expect(() => parseTiersFile(hook, 'x.yaml')).toThrow(/tiers\[1\]\.wake\.url: required by the webhook driver/);
    const idleOnly = valid.replace('kind: spot\n', 'kind: spot\n    idle_sleep_s: 60\n');
    expect(() => parseTiersFile(idleOnly, 'x.yaml')).toThrow(/tiers\[1\]\.idle_sleep_s: needs a wake driver/);
  });

  it('orders a model\'s tiers by its preference, the unlisted ones after in the default order', () => {
    const three = `${valid}  - name: od-b
    kind: on-demand
    endpoints: [http://127.0.0.1:8092]
    models:
      - id: llama-3.1-8b
        price: { input_per_mtok: 0.30, output_per_mtok: 0.60 }
      - id: only-b
        price: { input_per_mtok: 0.30, output_per_mtok: 0.60 }
`;
    expect(new ModelCatalog(parseTiersFile(three, 't.yaml')).routesFor('llama-3.1-8b')!.map((r) => r.tier)).toEqual(['spot-a', 'od', 'od-b']);
    const preferred = `${three}preference:\n  llama-3.1-8b: [od-b, od]\n`;
    expect(new ModelCatalog(parseTiersFile(preferred, 't.yaml')).routesFor('llama-3.1-8b')!.map((r) => r.tier)).toEqual(['od-b', 'od', 'spot-a']);

    expect(() => parseTiersFile(`${three}preference:\n  nope: [od]\n`, 'x.yaml')).toThrow(/preference\.nope: no tier serves model "nope"/);
    expect(() => parseTiersFile(`${three}preference:\n  llama-3.1-8b: [od, gone]\n`, 'x.yaml')).toThrow(/preference\.llama-3\.1-8b\[1\]: no tier is named "gone"/);
    expect(() => parseTiersFile(`${three}preference:\n  only-b: [od]\n`, 'x.yaml')).toThrow(/preference\.only-b\[0\]: tier "od" does not serve "only-b"/);
    expect(() => parseTiersFile(`${three}preference:\n  only-b: [od-b, od-b]\n`, 'x.yaml')).toThrow(/preference\.only-b\[1\]: tier "od-b" is listed twice/);
    expect(() => parseTiersFile(`${three}preference:\n  only-b: []\n`, 'x.yaml')).toThrow(/preference\.only-b: /);
  });

  it('takes the APIs a model serves per tier: routes per API, a model without apis serving every API', () => {
    const file = `
tiers:
  - name: spot-a
    kind: spot
    endpoints: [http://127.0.0.1:8090]
    models:
      - id: llama
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
        apis: [chat, responses]
      - id: plain
        price: { input_per_mtok: 0.05, output_per_mtok: 0.10 }
  - name: od
    kind: on-demand
    endpoints: [http://127.0.0.1:8091]
    models:
      - id: llama
        price: { input_per_mtok: 0.10, output_per_mtok: 0.20 }
        apis: [chat, messages]
`;
    const catalog = new ModelCatalog(parseTiersFile(file, 't.yaml'));
    expect(catalog.routesFor('llama', 'chat')!.map((r) => r.tier)).toEqual(['spot-a', 'od']);
    expect(catalog.routesFor('llama', 'messages')!.map((r) => r.tier)).toEqual(['od']);
    expect(catalog.routesFor('llama', 'embeddings')).toBeUndefined();
    expect(catalog.routesFor('llama')!.map((r) => r.tier)).toEqual(['spot-a', 'od']);
    expect(catalog.routesFor('plain', 'messages')).toBe(catalog.routesFor('plain'));
    expect(catalog.routesFor('nope', 'messages')).toBeUndefined();
    expect(catalog.modelIds()).toEqual(['llama', 'plain']);
    // no restriction anywhere: the one list, whatever the API
    const open = new ModelCatalog(parseTiersFile(valid, 't.yaml'));
    expect(open.routesFor('llama-3.1-8b', 'messages')).toBe(open.routesFor('llama-3.1-8b'));
    expect(() => parseTiersFile(file.replace('[chat, messages]', '[chat, telepathy]'), 'x.yaml')).toThrow(/tiers\[1\]\.models\[0\]\.apis\[1\]/);
    expect(() => parseTiersFile(file.replace('[chat, messages]', '[]'), 'x.yaml')).toThrow(/tiers\[1\]\.models\[0\]\.apis/);
  });

  it('prices audio per minute, required where a model lists the audio API', () => {
    const file = (price: string) => `
tiers:
  - name: spot
    kind: spot
    endpoints: [http://127.0.0.1:8090]
    models:
      - id: whisper
        apis: [audio]
        price: ${price}
`;
    const ok = parseTiersFile(file('{ input_per_mtok: 0.1, output_per_mtok: 0.2, audio_per_minute: 0.006 }'), 't.yaml');
    expect(ok.tiers[0].models[0].price.audio_per_minute).toBe(0.006);
    expect(() => parseTiersFile(file('{ input_per_mtok: 0.1, output_per_mtok: 0.2 }'), 'x.yaml')).toThrow(
      /tiers\[0\]\.models\[0\]\.price\.audio_per_minute: a model that serves `audio` needs `price\.audio_per_minute`/,
    );
    expect(() => parseTiersFile(file('{ input_per_mtok: 0.1, output_per_mtok: 0.2, audio_per_minute: -1 }'), 'x.yaml')).toThrow(/audio_per_minute/);
  });

  it('takes a notice block: a URL template filled per endpoint, or one URL per endpoint, with defaults', () => {
    const withNotice = (block: string) =>
      valid.replace('    endpoints: [http://127.0.0.1:8090]\n', `    endpoints: [http://127.0.0.1:8090, 'http://[::1]:8092', https://gpu-3.internal]\n${block}`);
    const templated = new ModelCatalog(parseTiersFile(withNotice('    notice: { url: "http://{host}:9100/notice?engine={port}" }\n'), 't.yaml'));
    expect(templated.tier('spot-a')!.notice).toEqual({
      urls: ['http://127.0.0.1:9100/notice?engine=8090', 'http://[::1]:9100/notice?engine=8092', 'http://gpu-3.internal:9100/notice?engine=443'],
      intervalMs: 5_000,
      defaultDeadlineS: 30,
    });
    expect(templated.tier('od')!.notice).toBeNull();
    const origin = new ModelCatalog(parseTiersFile(withNotice('    notice: { url: "{origin}/spot/notice", interval_ms: 250, default_deadline_s: 120 }\n'), 't.yaml'));
    expect(origin.tier('spot-a')!.notice).toMatchObject({ urls: ['http://127.0.0.1:8090/spot/notice', 'http://[::1]:8092/spot/notice', 'https://gpu-3.internal/spot/notice'], intervalMs: 250, defaultDeadlineS: 120 });
    const listed = new ModelCatalog(parseTiersFile(withNotice('    notice:\n      urls: [http://a:9100/n, http://b:9100/n, http://c:9100/n]\n'), 't.yaml'));
    expect(listed.tier('spot-a')!.notice!.urls).toEqual(['http://a:9100/n', 'http://b:9100/n', 'http://c:9100/n']);

    expect(() => parseTiersFile(withNotice('    notice: { urls: [http://a:9100/n] }\n'), 't.yaml')).toThrow(/tiers\[1\]\.notice\.urls: expected one URL per endpoint \(3\), got 1/);
    expect(() => parseTiersFile(withNotice('    notice: { interval_ms: 1000 }\n'), 't.yaml')).toThrow(/tiers\[1\]\.notice\.url: give url \(a template\) or urls/);
    expect(() => parseTiersFile(withNotice('    notice: { url: "http://x/{hostname}/n" }\n'), 't.yaml')).toThrow(/tiers\[1\]\.notice\.url: expected an http\(s\) URL template/);
    expect(() => parseTiersFile(withNotice('    notice: { url: "ftp://{host}/n" }\n'), 't.yaml')).toThrow(/notice\.url/);
    expect(() => parseTiersFile(withNotice('    notice: { url: "{origin}/n", interval_ms: 10 }\n'), 't.yaml')).toThrow(/notice\.interval_ms/);
    expect(() => parseTiersFile(withNotice('    notice: { url: "{origin}/n", every: 10 }\n'), 't.yaml')).toThrow(/tiers\[1\]\.notice/);
  });

  it('loads from disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tiers-'));
    writeFileSync(join(dir, 'tiers.yaml'), valid);
    expect(loadTiersFile(join(dir, 'tiers.yaml')).tiers).toHaveLength(2);
  });
});
