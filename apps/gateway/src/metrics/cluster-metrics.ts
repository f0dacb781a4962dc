import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

const REQUEST = 'spot:cluster-metrics:request';
const REPLY = 'spot:cluster-metrics:reply';
const TIMEOUT_MS = 5_000;

interface MetricsRequest {
  type: typeof REQUEST;
  id: number;
}

interface MetricsReply {
  type: typeof REPLY;
  id: number;
  text?: string;
  error?: string;
}

const isRequest = (m: unknown): m is MetricsRequest => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === REQUEST;
const isReply = (m: unknown): m is MetricsReply => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === REPLY;

/**
 * The primary of a multi-process gateway: answers a worker's request for the whole cluster's metrics. prom-client's
 * AggregatorRegistry asks every worker for its registry over IPC and merges them (counters and histograms summed,
 * per `worker` label: see {@link ClusterMetricsClient}).
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: unknown) => {
    if (!isRequest(message)) return;
    const reply = (r: Omit<MetricsReply, 'type' | 'id'>) => {
      if (worker.isConnected()) worker.send({ type: REPLY, id: message.id, ...r });
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
    );
  });
}

/**
 * A worker of a multi-process gateway: its registry is the one the primary aggregates, every series labelled with
 * the worker's id (so one scrape of any worker shows each worker's share, and `sum without (worker)` the total),
 * and {@link text} is the whole cluster's metrics, asked of the primary.
 */
export class ClusterMetricsClient {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();

  constructor(registry: Registry) {
    registry.setDefaultLabels({ worker: String(cluster.worker?.id ?? 0) });
    AggregatorRegistry.setRegistries([registry]);
    // constructing one is what installs prom-client's answer to the primary's requests (in a worker, too)
    new AggregatorRegistry();
    process.on('message', (message: unknown) => {
      if (!isReply(message)) return;
      const w = this.waiting.get(message.id);
      if (w === undefined) return;
      this.waiting.delete(message.id);
      clearTimeout(w.timer);
      if (message.text !== undefined) w.resolve(message.text);
      else w.reject(new Error(`cluster metrics: ${message.error ?? 'no answer'}`));
    });
  }

  /** The metrics of every worker, merged by the primary. */
  text(): Promise<string> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`cluster metrics: the primary did not answer within ${TIMEOUT_MS} ms`));
      }, TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      const request: MetricsRequest = { type: REQUEST, id };
      process.send!(request);
    });
  }
}
