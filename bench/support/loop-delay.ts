import type { ChildProcess } from 'node:child_process';
import path from 'node:path';

/** Sampling interval of the probe's histogram, in ms. */
export const LOOP_DELAY_RESOLUTION_MS = 10;

/** Marks the process the bench started (its descendants do not inherit it). */
export const LOOP_DELAY_ENV = 'BENCH_LOOP_PROBE';

/** The preload that samples a child's event loop (the built file: benches run from dist/). */
export const LOOP_DELAY_PROBE = path.join(__dirname, 'loop-delay-probe.js');

export interface LoopDelayRequest {
  type: 'loop-delay';
  id: number;
  /** Start a new window after answering. */
  reset: boolean;
}

/** Event-loop delay of a process since the last reset, in ms (beyond the sampling interval). */
export interface LoopDelay {
  samples: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
  /** Garbage collections in the window: counts by kind, total and longest pause (ms). */
  gc?: GcStats;
}

export interface GcStats {
  minor: number;
  major: number;
  incremental: number;
  weakcb: number;
  pauseMs: number;
  majorPauseMs: number;
  maxPauseMs: number;
}

export interface LoopDelayReply extends LoopDelay {
  type: 'loop-delay';
  id: number;
}

let nextId = 1;

/**
 * Asks a child started with {@link LOOP_DELAY_PROBE} preloaded and an IPC channel for its event-loop delay since
 * the last reset (and starts a new window when `reset`). Rejects after 5 s without an answer.
 */
export function loopDelay(child: ChildProcess, reset = false): Promise<LoopDelay> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const onMessage = (m: LoopDelayReply) => {
      if (m?.type !== 'loop-delay' || m.id !== id) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      const { type: _type, id: _id, ...delay } = m;
      resolve(delay);
    };
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`pid ${child.pid} did not report its event-loop delay (was ${LOOP_DELAY_PROBE} preloaded, with an IPC channel?)`));
    }, 5_000);
    child.on('message', onMessage);
    const request: LoopDelayRequest = { type: 'loop-delay', id, reset };
    child.send(request);
  });
}
