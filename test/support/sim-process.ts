import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { freePort } from './free-port';

const SIM_MAIN = resolve(__dirname, '../../dist/apps/vllm-sim/src/main.js');

/** A vllm-sim in a process of its own serving `model` (so that it can be SIGKILLed, as a spot machine vanishes). */
export async function simProcess(model: string, args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [SIM_MAIN, '--port', String(port), '--models', model, ...args], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) return { child, url };
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  throw new Error('vllm-sim process did not start');
}
