import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { Logger } from '@nestjs/common';
import type { AppConfig } from '@spot/config';
import { serveClusterMetrics } from '../metrics/cluster-metrics';

/** GATEWAY_PROCESSES, with `auto` (0) resolved to the cores this process may use. */
export function gatewayProcesses(config: AppConfig): number {
  return config.GATEWAY_PROCESSES === 0 ? availableParallelism() : config.GATEWAY_PROCESSES;
}

/** A worker that dies more often than this within {@link RESTART_WINDOW_MS} is not restarted again. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 500;
/** Beyond SHUTDOWN_GRACE_MS, what a worker's stop may take (cutting streams, flushing or spilling usage). */
const STOP_SLACK_MS = 15_000;

/**
 * The primary of a multi-process gateway (GATEWAY_PROCESSES > 1): forks the workers, which share GATEWAY_PORT
 * through node:cluster (the primary accepts and hands connections round-robin) and each run the whole gateway,
 * usage recorder included, over the same USAGE_SPOOL_DIR (its files are per process; a dead process's journal is
 * replayed by whichever process scans first). It serves nothing itself except the merge of the workers' metrics.
 *
 * SIGTERM / SIGINT: forwarded to every worker, which drains (in-flight streams finish within SHUTDOWN_GRACE_MS,
 * usage is flushed); the primary exits 0 once all have exited 0, 1 otherwise (or if one hangs past the grace
 * period plus {@link STOP_SLACK_MS}: it is killed).
 *
 * A worker that dies on its own after it was serving is restarted: the others keep serving their streams, and its
 * recorded usage survives in its journal. A worker that dies before it ever listened (bad configuration, port
 * taken), or that keeps dying (more than {@link MAX_RESTARTS} times a minute), stops the whole gateway with exit
 * code 1, so that the supervisor (systemd, Kubernetes) sees the failure instead of a primary that looks alive.
 */
export class GatewayPrimary {
  private readonly logger = new Logger('Gateway');
  private readonly listening = new WeakSet<Worker>();
  private readonly restarts: number[] = [];
  private stopping = false;
  private failed = false;

  constructor(
    private readonly count: number,
    private readonly config: AppConfig,
  ) {}

  run(): void {
    serveClusterMetrics();
    cluster.on('listening', (worker) => this.listening.add(worker));
    cluster.on('exit', (worker, code, signal) => this.exited(worker, code, signal));
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => this.stop(signal));
    for (let i = 0; i < this.count; i++) cluster.fork();
    this.logger.log(`${this.count} worker processes on port ${this.config.GATEWAY_PORT} (pid ${process.pid} is the primary)`);
  }

  private exited(worker: Worker, code: number | null, signal: string | null): void {
    const how = signal !== null ? `signal ${signal}` : `code ${code}`;
    if (this.stopping) {
      if (code !== 0) {
        this.failed = true;
        this.logger.error(`worker ${worker.id} (pid ${worker.process.pid}) stopped with ${how}`);
      }
      this.exitWhenAllGone();
      return;
    }
    if (!this.listening.has(worker)) {
      this.logger.error(`worker ${worker.id} (pid ${worker.process.pid}) exited with ${how} before it was serving: stopping the gateway`);
      this.fail();
      return;
    }
    const now = Date.now();
    while (this.restarts.length > 0 && now - this.restarts[0] > RESTART_WINDOW_MS) this.restarts.shift();
    if (this.restarts.length >= MAX_RESTARTS) {
      this.logger.error(`worker ${worker.id} (pid ${worker.process.pid}) exited with ${how}, the ${MAX_RESTARTS + 1}th worker death within a minute: stopping the gateway`);
      this.fail();
      return;
    }
    this.restarts.push(now);
    this.logger.error(`worker ${worker.id} (pid ${worker.process.pid}) exited with ${how}: starting another`);
    setTimeout(() => {
      if (!this.stopping) cluster.fork();
    }, RESTART_DELAY_MS);
  }

  private fail(): void {
    this.failed = true;
    this.stop('SIGTERM');
  }

  private stop(signal: NodeJS.Signals): void {
    if (this.stopping) return;
    this.stopping = true;
    this.logger.log(`${signal}: stopping ${this.alive().length} worker(s)`);
    for (const worker of this.alive()) worker.process.kill(signal);
    const deadline = setTimeout(() => {
      for (const worker of this.alive()) {
        this.logger.error(`worker ${worker.id} (pid ${worker.process.pid}) still running ${this.config.SHUTDOWN_GRACE_MS + STOP_SLACK_MS} ms after ${signal}: killing it`);
        worker.process.kill('SIGKILL');
      }
      this.failed = true;
    }, this.config.SHUTDOWN_GRACE_MS + STOP_SLACK_MS);
    deadline.unref();
    this.exitWhenAllGone();
  }

  private alive(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  }

  private exitWhenAllGone(): void {
    if (this.alive().length > 0) return;
    process.exit(this.failed ? 1 : 0);
  }
}
