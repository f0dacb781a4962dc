/**
 * Preloaded into a process a bench starts (`node -r dist/bench/support/loop-delay-probe.js main.js`, with an
 * IPC channel): samples that process's own event-loop delay (perf_hooks.monitorEventLoopDelay) and answers
 * the bench's `{ type: 'loop-delay' }` messages with it (see loop-delay.ts). Active only in the process the bench
 * started (marked by BENCH_LOOP_PROBE, removed here so that workers it forks, which inherit the preload and
 * have IPC channels of their own to it, leave their channels alone).
 */
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { LOOP_DELAY_ENV, LOOP_DELAY_RESOLUTION_MS, type LoopDelayReply, type LoopDelayRequest } from './loop-delay';

const marked = process.env[LOOP_DELAY_ENV] === '1';
delete process.env[LOOP_DELAY_ENV];
if (marked && typeof process.send === 'function') {
  const histogram = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  histogram.enable();
  // garbage collections in the same window: count and pause time by kind
  const gc = { minor: 0, major: 0, incremental: 0, weakcb: 0, pauseMs: 0, majorPauseMs: 0, maxPauseMs: 0 };
  const resetGc = () => Object.assign(gc, { minor: 0, major: 0, incremental: 0, weakcb: 0, pauseMs: 0, majorPauseMs: 0, maxPauseMs: 0 });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        gc.major++;
        gc.majorPauseMs += e.duration;
      } else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor++;
      else if (kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) gc.incremental++;
      else gc.weakcb++;
      gc.pauseMs += e.duration;
      gc.maxPauseMs = Math.max(gc.maxPauseMs, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  // the sampling timer fires every RESOLUTION ms when idle; what is late beyond that is the delay
  const ms = (ns: number) => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS);
  process.on('message', (m: LoopDelayRequest) => {
    if (m?.type !== 'loop-delay') return;
    const reply: LoopDelayReply = {
      type: 'loop-delay',
      id: m.id,
      samples: histogram.count,
      p50: ms(histogram.percentile(50)),
      p99: ms(histogram.percentile(99)),
      max: ms(histogram.max),
      mean: ms(histogram.mean),
      gc: { ...gc },
    };
    if (m.reset) {
      histogram.reset();
      resetGc();
    }
    process.send!(reply);
  });
  // the probe must not keep the process alive (graceful stops end on their own)
  process.channel?.unref();
}
