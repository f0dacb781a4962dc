import 'reflect-metadata';
import { Global, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { APP_CONFIG, loadConfig } from '@spot/config';
import { ApiKeysRepository, UsageEventsRepository } from '@spot/db';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UsageRecorder } from './usage-recorder';
import { UsageModule } from './usage.module';

describe('UsageModule', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'usage-module-spec-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('provides one recorder, started on init and flushed on close through the repositories', async () => {
    const inserted: unknown[] = [];
    const touched: string[] = [];
    const spoolDir = path.join(dir, 'spool');

    @Global()
    @Module({
      providers: [
        { provide: APP_CONFIG, useValue: loadConfig({ USAGE_SPOOL_DIR: spoolDir, USAGE_FLUSH_MS: '60000' }) },
        { provide: UsageEventsRepository, useValue: { insertMany: async (rows: unknown[]) => inserted.push(...rows) } },
        { provide: ApiKeysRepository, useValue: { touchLastUsed: async (ids: string[]) => void touched.push(...ids) } },
      ],
      exports: [APP_CONFIG, UsageEventsRepository, ApiKeysRepository],
    })
    class FakeDbModule {}

    @Module({ imports: [FakeDbModule, UsageModule] })
    class AppModule {}

    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    const recorder = app.get(UsageRecorder);
    expect(app.get(UsageRecorder)).toBe(recorder);
    expect((await stat(spoolDir)).isDirectory()).toBe(true);

    const keyId = randomUUID();
    recorder.record({
      requestId: 'req-module-1',
      createdAt: new Date(),
      orgId: randomUUID(),
      keyId,
      model: 'm',
      tier: 'spot',
      promptTokens: 1,
      completionTokens: 1,
      cachedTokens: 0,
      audioSeconds: 0,
      ttftMs: 1,
      durationMs: 2,
      status: 200,
      estimated: false,
      costNanos: 7,
    });
    expect(inserted).toHaveLength(0);
    await app.close();
    expect(inserted).toEqual([expect.objectContaining({ requestId: 'req-module-1' })]);
    expect(touched).toEqual([keyId]);
  });
});
