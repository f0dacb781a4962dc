import { Controller, Get, Header, Inject, UseGuards } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { REDIS, RedisKeys } from '@spot/redis';
import { loadTiersFile, ModelCatalog, type PreemptionNotice, PreemptionNoticeStore, tierKeys, type TierHistoryEntry, type TierView } from '@spot/tiers';
import { Redis } from 'ioredis';
import type { ConsoleSession } from '../auth/console-session';
import { CurrentSession } from '../auth/current-user.decorator';
import { SessionGuard } from '../auth/session.guard';
import { OrgsService } from '../orgs/orgs.service';
import { escapeHtml as e, renderPage } from '../pages/layout';
import { TierStreamsService } from './tier-streams.service';

/**
 * The GPU tiers and their state, for signed-in users: each tier's kind, models and wake settings, and for
 * tiers that sleep, their state (the latest change the gateways and the worker recorded in Redis) and history,
 * the replicas under a preemption notice (by their index in the tier, never their address), and the streams of the
 * last 24 h, over every org, that were continued off the tier, that it took over, and that it lost. Per-replica
 * health is each gateway's own view: see the gateway's GET /admin/tiers.
 */
@Controller('tiers')
@UseGuards(SessionGuard)
export class TiersPageController {
  private readonly tiers: readonly TierView[];

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly orgs: OrgsService,
    private readonly notices: PreemptionNoticeStore,
    private readonly streams: TierStreamsService,
  ) {
    let tiers: readonly TierView[] = [];
    try {
      tiers = new ModelCatalog(loadTiersFile(config.TIERS_FILE)).tiers();
    } catch {
      tiers = []; // the console does not route: without a readable tiers file this page is empty
    }
    this.tiers = tiers;
  }

  @Get()
  @Header('content-type', 'text/html; charset=utf-8')
  async page(@CurrentSession() s: ConsoleSession): Promise<string> {
    const histories = await Promise.all(
      this.tiers.map(async (t) =>
        t.wake === null ? [] : ((await this.redis.lrange(this.keys.key(tierKeys.history(t.name)), 0, 9)).map((h) => JSON.parse(h) as TierHistoryEntry)),
      ),
    );
    const replicas = this.tiers.flatMap((t) => t.endpoints.map((endpoint) => ({ tier: t.name, endpoint })));
    const [found, streams] = await Promise.all([this.notices.read(replicas), this.streams.last24h()]);
    const noticesOf = (t: TierView): Array<{ replica: number; notice: PreemptionNotice }> =>
      t.endpoints.flatMap((endpoint, replica) => {
        const notice = found[replicas.findIndex((r) => r.tier === t.name && r.endpoint === endpoint)];
        return notice ? [{ replica, notice }] : [];
      });
    const now = Date.now();
    const rows = this.tiers
      .map((t, i) => {
        const noticed = noticesOf(t)
          .map(({ replica, notice }) => {
            const at = new Date(notice.deadlineAt).toISOString();
            const gone = now >= notice.deadlineAt;
            return `<li data-notice="${gone ? 'gone' : 'coming'}">replica ${replica} ${gone ? 'gone since' : 'goes away at'} <time datetime="${e(at)}">${e(at.slice(0, 19).replace('T', ' '))}</time> (${e(notice.source)}, ${e(notice.by)})</li>`;
          })
          .join('');
        const replicaCell = `${t.endpoints.length}${noticed ? `<ul class="notices">${noticed}</ul>` : ''}`;
        const latest = histories[i][0];
        const state = t.wake === null ? 'always on' : (latest?.state ?? 'awake');
        const wake = t.wake === null ? '–' : `${e(t.wake.driver)}, deadline ${t.wake.deadline_s} s${t.idleSleepS ? `, sleeps after ${t.idleSleepS} s idle` : ''}`;
        const history = histories[i].length
          ? `<details><summary>${histories[i].length} recent changes</summary><ul>${histories[i]
              .map((h) => `<li><time datetime="${e(h.at)}">${e(h.at.slice(0, 19).replace('T', ' '))}</time> ${e(h.state)}: ${e(h.reason)} (${e(h.by)})</li>`)
              .join('')}</ul></details>`
          : '';
        const s = streams.get(t.name);
        const streamCell = `<td data-streams="${e(t.name)}"><span data-count="continued-off">${s?.continuedOff ?? 0}</span> continued elsewhere · <span data-count="took-over">${s?.tookOver ?? 0}</span> taken over · <span data-count="lost">${s?.lost ?? 0}</span> lost</td>`;
        return `<tr><th scope="row">${e(t.name)}</th><td>${e(t.kind)}</td><td>${t.models.map((m) => `<code>${e(m)}</code>`).join(' ')}</td><td>${replicaCell}</td><td>${wake}</td><td><span class="badge" data-state="${e(state)}">${e(state)}</span>${latest ? ` since <time datetime="${e(latest.at)}">${e(latest.at.slice(0, 19).replace('T', ' '))}</time>` : ''}${history}</td>${streamCell}</tr>`;
      })
      .join('');
    const body = `<table><caption class="muted">Tiers serve models, spot before on-demand unless a model's preference says otherwise. A sleeping tier wakes on the next request. A replica under a preemption notice takes no new requests. Streams, over the last 24 h and every org: <em>continued elsewhere</em> counts the streams whose engine on this tier was lost mid-stream and that went on on another engine; <em>taken over</em>, the streams this tier continued for another engine; <em>lost</em>, the streams whose engine here failed and that were not continued (ended with an error after tokens had reached the client).</caption>
<thead><tr><th scope="col">Tier</th><th scope="col">Kind</th><th scope="col">Models</th><th scope="col">Replicas</th><th scope="col">Wake</th><th scope="col">State</th><th scope="col">Streams (24 h)</th></tr></thead><tbody>${rows}</tbody></table>`;
    return renderPage({ title: 'GPU tiers', user: s.user, csrfToken: s.csrfToken, orgs: await this.orgs.list(s.user), active: 'tiers', body });
  }
}
