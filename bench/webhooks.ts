import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { createUpstream, git, type Upstream } from '../test/support/gitFixtures.js';
import { githubHeaders, loadFixture, retarget } from '../test/support/webhooks.js';
import { addRepositoryWithWebhook, createProject, dbId, watchSync } from './api.js';
import { measure, type BenchContext } from './context.js';
import { machineCpuMs } from './cost.js';
import { benchResult, type BenchResult } from './report.js';
import { Service } from './service.js';
import { waitForAllSynced, waitForIdle } from './setup.js';
import { inParallel, median, round, sleep, timed, waitUntil } from './timing.js';

interface Registration {
  upstream: Upstream;
  id: string;
  secret: string;
}

interface Delivery {
  headers: Record<string, string>;
  body: Buffer;
}

const fixtureName = 'github-push-commits-drone.json';

/** A published push payload (drone/go-scm) pointed at `upstream`, naming `after`, signed with `secret`. */
async function pushDelivery(upstream: Upstream, secret: string, after: string): Promise<Delivery> {
  const raw = await loadFixture(fixtureName);
  const published = JSON.parse(raw.toString('utf8')) as { after: string };
  const name = upstream.url.replace(/^https?:\/\/[^/]+\//, '').replace(/\.git$/, '');
  const body = retarget(raw, { url: upstream.url, name }, { [published.after]: after });
  return { headers: githubHeaders('push', body, secret, randomUUID()), body };
}

/** A fresh delivery id and signature-preserving copy of a delivery (same body, same signature). */
function again(delivery: Delivery): Delivery {
  return { headers: { ...delivery.headers, 'X-GitHub-Delivery': randomUUID() }, body: delivery.body };
}

async function register(service: Service, projectId: string, upstream: Upstream): Promise<Registration> {
  const { id, secret } = await addRepositoryWithWebhook(service.client, projectId, upstream.url);
  return { upstream, id, secret };
}

interface Posted {
  latencies: number[];
  statuses: Map<number, number>;
  /** Wall time of the timed deliveries (after the warm-up). */
  ms: number;
  /** Machine CPU used meanwhile (every process: client, server, database), when asked for. */
  cpuMs?: number;
}

/**
 * POSTs every delivery over `connections` kept-alive connections; the latency
 * of each, in ms. `warmUp` deliveries (one per connection) go first, untimed
 * and uncounted: the timed ones then measure answering on open connections,
 * not 50 TCP connects at once and a machine waking up from idle (either side
 * that went first in an iteration paid that: first-wave latencies up to 99 ms
 * even for the bare floor).
 */
async function postAll(
  url: string,
  deliveries: readonly Delivery[],
  connections: number,
  options: { warmUp?: readonly Delivery[]; cpu?: boolean } = {},
): Promise<Posted> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const post = (delivery: Delivery) =>
    new Promise<number>((resolve, reject) => {
      const request = http.request(url, { method: 'POST', agent, headers: { ...delivery.headers, 'Content-Length': String(delivery.body.length) } }, (response) => {
        response.resume();
        response.once('end', () => resolve(response.statusCode ?? 0));
      });
      request.once('error', reject);
      request.end(delivery.body);
    });
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  try {
    await Promise.all((options.warmUp ?? []).map(post));
    // Read only when asked: the /proc reads would otherwise land inside callers' own timings.
    const cpu = options.cpu ? await machineCpuMs() : 0;
    const started = performance.now();
    await inParallel(deliveries, connections, async (delivery) => {
      const sent = performance.now();
      const status = await post(delivery);
      latencies.push(performance.now() - sent);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    });
    const ms = performance.now() - started;
    return { latencies, statuses, ms, ...(options.cpu ? { cpuMs: (await machineCpuMs()) - cpu } : {}) };
  } finally {
    agent.destroy();
  }
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** The floor: a bare node:http server (own process, like ours) that verifies the HMAC and answers 202. */
async function startBareServer(secret: string): Promise<{ url: string; stop(): Promise<void> }> {
  const script = `
    const http = require('node:http');
    const { createHmac, timingSafeEqual } = require('node:crypto');
    const secret = process.env.BARE_SECRET;
    const server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const expected = Buffer.from('sha256=' + createHmac('sha256', secret).update(body).digest('hex'));
        const given = Buffer.from(String(req.headers['x-hub-signature-256'] || ''));
        const valid = given.length === expected.length && timingSafeEqual(given, expected);
        res.writeHead(valid ? 202 : 401, { 'content-type': 'application/json' }).end(valid ? '{"accepted":1}' : '{"error":"signature"}');
      });
    });
    server.listen(0, '127.0.0.1', () => console.log(server.address().port));
  `;
  const child: ChildProcess = spawn(process.execPath, ['--max-semi-space-size=4', '-e', script], {
    env: { PATH: process.env.PATH, BARE_SECRET: secret },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
    child.once('exit', (code) => reject(new Error(`bare server exited (${code})`)));
  });
  return {
    url: `http://127.0.0.1:${port}/webhooks/github`,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** Until every stored delivery is processed and no run is active. */
async function waitForProcessed(service: Service): Promise<void> {
  const pending = async () => (await service.query<{ n: number }>('SELECT count(*)::int AS n FROM "WebhookDelivery" WHERE "processedAt" IS NULL'))[0]?.n ?? 0;
  await waitUntil(async () => (await pending()) === 0, { intervalMs: 50, timeoutMs: 300_000, describe: async () => `${await pending()} deliveries unprocessed` });
  await waitForIdle(service);
}

/**
 * webhook-ack: 2,000 signed push deliveries for 20 repositories from 50
 * connections: ack latency (p50/p99) and throughput, vs a bare node:http
 * server that only verifies the HMAC and answers 202 (the floor). Every
 * delivery is verified, stored, de-duplicated and processed; the pushes name
 * commits the copies are at, so no sync competes with the measurement. Both
 * sides open their 50 connections with one untimed delivery each first.
 */
export async function webhookAck(ctx: BenchContext): Promise<BenchResult> {
  const repositoryCount = Math.max(1, ctx.scale(20));
  const deliveryCount = ctx.scale(2000);
  const connections = 50;
  const [service, upstreams] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'webhook-ack-service'), { REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    Promise.all(Array.from({ length: repositoryCount }, (_, index) => createUpstream(ctx.git, `webhook-ack/repo-${index}`, { files: { 'README.md': `# ${index}\n` }, branch: 'master' }))),
  ]);
  const bare = await startBareServer('bare-secret');
  try {
    const projectId = await createProject(service.client, 'webhook-ack');
    const registrations: Registration[] = [];
    for (const upstream of upstreams) registrations.push(await register(service, projectId, upstream));
    await waitForAllSynced(service, repositoryCount);
    await waitForIdle(service);
    ctx.log(`[webhook-ack] ${repositoryCount} repositories registered and synced`);

    let templates: Delivery[] = [];
    const samples = await measure(ctx, 'webhook-ack', {
      runs: ctx.runs(5), // each side runs under a second: five medians out a stray autovacuum
      warmup: ctx.warmup(1),
      // Pushes naming each repository's head: what is measured is the webhook path (verify, store,
      // de-duplicate, process), not the syncs a new commit causes (webhook-freshness and -storm time those).
      prepare: async () => {
        templates = [];
        for (const registration of registrations) {
          templates.push(await pushDelivery(registration.upstream, registration.secret, await registration.upstream.head()));
        }
      },
      ours: async () => {
        const deliveries = Array.from({ length: deliveryCount }, (_, index) => again(templates[index % templates.length]!));
        const warmUp = Array.from({ length: connections }, (_, index) => again(templates[index % templates.length]!));
        const xacts = await service.serverTransactions();
        const result = await postAll(`${service.url}/webhooks/github`, deliveries, connections, { warmUp, cpu: true });
        await waitForProcessed(service);
        // Accepting and processing (the warm-up's too), and the syncs the pushes queued.
        const perDelivery = round(((await service.serverTransactions()) - xacts) / (deliveryCount + warmUp.length), 2);
        return {
          ms: result.ms,
          detail: { ...ackDetail(result), db_transactions_per_delivery: perDelivery, machine_cpu_ms_per_delivery: round(result.cpuMs! / deliveryCount, 2) },
        };
      },
      baseline: async () => {
        const signed = (index: number) => {
          const template = templates[index % templates.length]!;
          return { headers: githubHeaders('push', template.body, 'bare-secret'), body: template.body };
        };
        const deliveries = Array.from({ length: deliveryCount }, (_, index) => signed(index));
        const warmUp = Array.from({ length: connections }, (_, index) => signed(index));
        const result = await postAll(bare.url, deliveries, connections, { warmUp, cpu: true });
        return { ms: result.ms, detail: { ...ackDetail(result), machine_cpu_ms_per_delivery: round(result.cpuMs! / deliveryCount, 2) } };
      },
    });
    const ours = samples.oursDetails;
    const p99 = median(ours.map((detail) => detail.p99_ms));
    const perSecond = median(ours.map((detail) => detail.deliveries_per_s));
    const stored = (await service.query<{ n: number }>('SELECT count(*)::int AS n FROM "WebhookDelivery"'))[0]?.n ?? 0;
    return benchResult('webhook-ack', 2, samples, {
      deliveries: deliveryCount,
      repositories: repositoryCount,
      connections,
      checks: [
        { metric: 'p99_ms', value: p99, max: 25 },
        { metric: 'deliveries_per_s', value: perSecond, min: 1000 },
      ],
      ours: ours,
      baseline: samples.baselineDetails,
      stored_deliveries: stored,
      peak_rss_mb: await service.peakRssMb(),
    });
  } finally {
    await bare.stop();
    await service.stop();
  }
}

function ackDetail(result: Posted) {
  return {
    p50_ms: round(percentile(result.latencies, 50), 1),
    p99_ms: round(percentile(result.latencies, 99), 1),
    deliveries_per_s: round((1000 * result.latencies.length) / result.ms),
    statuses: Object.fromEntries(result.statuses),
  };
}

/**
 * webhook-storm: 500 pushes to one repository within a second. Fetches (≤ 2)
 * and the time from the last delivery's answer to SYNCED at the newest SHA,
 * vs one plain `git fetch` of the same new commits.
 */
export async function webhookStorm(ctx: BenchContext): Promise<BenchResult> {
  const pushes = ctx.scale(500);
  const commitsPerStorm = 25;
  const [service, upstream] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'webhook-storm-service'), { REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    createUpstream(ctx.git, 'webhook-storm/repo', { files: { 'README.md': '# storm\n' }, branch: 'master' }),
  ]);
  const clone = path.join(ctx.workDir, 'webhook-storm-clone');
  try {
    const projectId = await createProject(service.client, 'webhook-storm');
    const registration = await register(service, projectId, upstream);
    await git(['clone', '--quiet', '--', upstream.url, clone]);
    await waitForAllSynced(service, 1);
    await waitForIdle(service);
    const id = dbId(registration.id);

    let shas: string[] = [];
    const samples = await measure(ctx, 'webhook-storm', {
      runs: ctx.runs(3),
      warmup: ctx.warmup(0),
      prepare: async (iteration) => {
        shas = [];
        for (let index = 0; index < commitsPerStorm; index++) shas.push(await upstream.commit({ 'storm.txt': `storm ${iteration}.${index}\n` }));
      },
      ours: async () => {
        const newest = shas.at(-1)!;
        const deliveries: Delivery[] = [];
        for (let index = 0; index < pushes; index++) {
          deliveries.push(await pushDelivery(upstream, registration.secret, shas[Math.min(shas.length - 1, Math.floor((index * shas.length) / pushes))]!));
        }
        ctx.git.resetStats();
        const started = performance.now();
        const { statuses } = await postAll(`${service.url}/webhooks/github`, deliveries, 50);
        const lastAnswered = performance.now();
        const synced = async () =>
          (await service.query<{ n: number }>(`SELECT count(*)::int AS n FROM "Repository" WHERE id = $1 AND status = 'SYNCED' AND "lastCommitSha" = $2`, [id, newest]))[0]?.n === 1;
        while (!(await synced())) await sleep(5);
        const ms = performance.now() - lastAnswered;
        await waitForProcessed(service);
        return {
          ms,
          detail: { fetches: ctx.git.repoStats('webhook-storm/repo').fetches, storm_ms: round(lastAnswered - started), statuses: Object.fromEntries(statuses) },
        };
      },
      baseline: async () => {
        const ms = await timed(() => git(['fetch', '--quiet', 'origin'], { cwd: clone }));
        return { ms, detail: {} };
      },
    });
    const fetches = Math.max(...samples.oursDetails.map((detail) => detail.fetches));
    return benchResult('webhook-storm', 1.5, samples, {
      pushes,
      distinct_commits: commitsPerStorm,
      checks: [{ metric: 'fetches', value: fetches, max: 2 }],
      ours: samples.oursDetails,
    });
  } finally {
    await service.stop();
  }
}

/**
 * webhook-freshness: a one-commit push until SYNCED (the subscription's DONE),
 * median over 20, vs `git fetch` + `git reset --hard`; the bar is ours ≤
 * baseline + 100 ms (the ratio target is derived from it).
 */
export async function webhookFreshness(ctx: BenchContext): Promise<BenchResult> {
  const [service, upstream] = await Promise.all([
    Service.start(path.join(ctx.workDir, 'webhook-freshness-service'), { REPOLENS_SCHEDULER_INTERVAL_MS: '0' }),
    createUpstream(ctx.git, 'webhook-freshness/repo', { files: { 'README.md': '# fresh\n', 'src/a.ts': 'export const a = 0;\n' }, branch: 'master' }),
  ]);
  const clone = path.join(ctx.workDir, 'webhook-freshness-clone');
  try {
    const projectId = await createProject(service.client, 'webhook-freshness');
    const registration = await register(service, projectId, upstream);
    await git(['clone', '--quiet', '--', upstream.url, clone]);
    await waitForAllSynced(service, 1);
    await waitForIdle(service);

    let head = '';
    const samples = await measure(ctx, 'webhook-freshness', {
      runs: ctx.runs(20),
      warmup: ctx.warmup(2),
      prepare: async (iteration) => {
        head = await upstream.commit({ 'src/a.ts': `export const a = ${iteration + 1};\n` });
      },
      ours: async () => {
        const delivery = await pushDelivery(upstream, registration.secret, head);
        const watch = watchSync(service.client, registration.id);
        try {
          await sleep(20); // the subscription is established before the push
          const started = performance.now();
          const { statuses } = await postAll(`${service.url}/webhooks/github`, [delivery], 1);
          const { event } = await watch.done;
          const ms = performance.now() - started;
          if (event.phase !== 'DONE' || event.commitSha !== head) throw new Error(`webhook sync ended ${event.phase} at ${event.commitSha}, expected DONE at ${head}`);
          return { ms, detail: { statuses: Object.fromEntries(statuses) } };
        } finally {
          await watch.close();
        }
      },
      baseline: async () => {
        const ms = await timed(async () => {
          await git(['fetch', '--quiet', 'origin'], { cwd: clone });
          await git(['reset', '--quiet', '--hard', 'origin/master'], { cwd: clone });
        });
        return { ms, detail: {} };
      },
    });
    const baseline = median(samples.baseline);
    const ours = median(samples.ours);
    return benchResult('webhook-freshness', round((baseline + 100) / baseline, 3), samples, {
      bar: 'ours ≤ baseline + 100 ms',
      ms_over_baseline: round(ours - baseline, 1),
    });
  } finally {
    await service.stop();
  }
}
