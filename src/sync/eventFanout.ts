import { randomUUID } from 'node:crypto';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { createPubSub } from 'graphql-yoga';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Logger } from 'pino';
import { SyncEvents, type SyncPubSubChannels } from './events.js';

/** The NOTIFY channel every instance LISTENs on. */
const channel = 'repolens_sync_events';
/** application_name of the listening connections: how an instance sees that others listen. */
const listenerName = 'repolens-events-listen';
/** How often an instance looks for other listeners (a new instance misses at most this much). */
const othersRefreshMs = 1000;
/** PostgreSQL refuses NOTIFY payloads from 8,000 bytes on. */
const maxPayloadBytes = 7900;

export interface EventFanout {
  events: SyncEvents;
  /** How events reach the other instances: none (one process), Redis, or PostgreSQL LISTEN/NOTIFY. */
  kind: 'local' | 'redis' | 'postgresql';
  close(): Promise<void>;
}

/**
 * The sync events of SPEC §1 ("Several processes"): a `syncStatus`
 * subscriber on any instance sees the runs every instance executes. With
 * `REDIS_URL` the pubsub's event target is yoga's Redis one; without it, on
 * PostgreSQL, events travel by NOTIFY on one channel (delivered here at once,
 * and to the other instances by their LISTEN connection); the embedded
 * database is one process, so its events stay in it.
 */
export async function createEventFanout(options: { redisUrl?: string | undefined; databaseUrl?: string | undefined; logger: Logger }): Promise<EventFanout> {
  const { logger } = options;
  if (options.redisUrl) {
    const connect = (role: string) => {
      const client = new Redis(options.redisUrl!, { maxRetriesPerRequest: 3, lazyConnect: true });
      // ioredis reconnects by itself; its errors are logged without the URL (it may hold a password).
      client.on('error', (error: Error) => logger.warn({ role, err: error.message }, 'Redis connection failed; retrying'));
      return client;
    };
    const publishClient = connect('publish');
    const subscribeClient = connect('subscribe');
    await Promise.all([publishClient.connect(), subscribeClient.connect()]);
    const eventTarget = createRedisEventTarget<CustomEvent>({ publishClient, subscribeClient });
    return {
      events: new SyncEvents(createPubSub<SyncPubSubChannels>({ eventTarget })),
      kind: 'redis',
      async close() {
        subscribeClient.disconnect();
        await publishClient.quit().catch(() => publishClient.disconnect());
      },
    };
  }
  if (options.databaseUrl) {
    const target = new PostgresEventTarget(options.databaseUrl, logger);
    await target.start();
    return { events: new SyncEvents(createPubSub<SyncPubSubChannels>({ eventTarget: target })), kind: 'postgresql', close: () => target.close() };
  }
  return { events: new SyncEvents(), kind: 'local', close: async () => undefined };
}

type Listener = EventListener | EventListenerObject;

/**
 * An event target over PostgreSQL NOTIFY: an event is dispatched to this
 * process's listeners at once and NOTIFYed (with this instance's id) to the
 * others, whose LISTEN connection dispatches it to theirs. One connection
 * publishes, in order; another listens, and comes back after a failure
 * (events in between are missed, as a subscriber who reconnects would).
 * While no other instance listens (pg_stat_activity, looked at every
 * second), nothing is NOTIFYed: one process pays nothing for the fan-out.
 */
class PostgresEventTarget {
  private readonly origin = randomUUID();
  private readonly listeners = new Map<string, Set<Listener>>();
  private publisher: pg.Client | null = null;
  private listener: pg.Client | null = null;
  private closed = false;
  private readonly retries = new Set<NodeJS.Timeout>();
  private othersListen = false;
  private turn: Promise<unknown> = Promise.resolve();
  private watcher: NodeJS.Timeout | undefined;

  constructor(
    private readonly connectionString: string,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await Promise.all([this.listen(), this.connectPublisher()]);
    await this.lookForOthers();
    this.watcher = setInterval(() => void this.lookForOthers(), othersRefreshMs);
    this.watcher.unref();
  }

  addEventListener(type: string, listener: Listener | null): void {
    if (!listener) return;
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener);
  }

  removeEventListener(type: string, listener: Listener | null): void {
    if (!listener) return;
    const set = this.listeners.get(type);
    set?.delete(listener);
    if (set?.size === 0) this.listeners.delete(type);
  }

  dispatchEvent(event: Event): boolean {
    this.deliver(event.type, (event as CustomEvent).detail);
    let payload = JSON.stringify({ origin: this.origin, type: event.type, detail: (event as CustomEvent).detail });
    if (Buffer.byteLength(payload) > maxPayloadBytes) {
      // Only a very long message makes an event this big: the others get it without the message.
      const detail = { ...((event as CustomEvent).detail as Record<string, unknown>), message: null };
      payload = JSON.stringify({ origin: this.origin, type: event.type, detail });
    }
    const publisher = this.publisher;
    if (publisher && this.othersListen) {
      this.inTurn(() => publisher.query('SELECT pg_notify($1, $2)', [channel, payload])).catch((error: Error) => {
        this.logger.warn({ err: error.message }, 'sync event not sent to the other instances');
      });
    }
    return true;
  }

  /** One statement at a time on the publishing connection, in the order they were asked for. */
  private inTurn<T>(statement: () => Promise<T>): Promise<T> {
    const result = this.turn.then(statement);
    this.turn = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watcher);
    for (const timer of this.retries) clearTimeout(timer);
    await Promise.all([this.publisher?.end().catch(() => undefined), this.listener?.end().catch(() => undefined)]);
  }

  /** Whether another instance's listener is connected to this database. */
  private async lookForOthers(): Promise<void> {
    const publisher = this.publisher;
    const own = (this.listener as (pg.Client & { processID?: number }) | null)?.processID ?? 0;
    if (!publisher) return;
    try {
      const { rows } = await this.inTurn(() =>
        publisher.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() AND pid <> $2`,
          [listenerName, own],
        ),
      );
      this.othersListen = (rows[0]?.n ?? 0) > 0;
    } catch {
      // Unknown: tell them (a NOTIFY nobody hears costs little).
      this.othersListen = true;
    }
  }

  private deliver(type: string, detail: unknown): void {
    const set = this.listeners.get(type);
    if (!set) return;
    const event = new CustomEvent(type, { detail });
    for (const listener of [...set]) {
      if (typeof listener === 'function') listener(event);
      else listener.handleEvent(event);
    }
  }

  private async connectPublisher(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString, application_name: 'repolens-events' });
    client.on('error', (error: Error) => {
      this.logger.warn({ err: error.message }, 'sync event connection to PostgreSQL failed; reconnecting');
      if (this.publisher === client) this.publisher = null;
      this.schedule(() => this.connectPublisher());
    });
    await client.connect();
    this.publisher = client;
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString, application_name: listenerName });
    client.on('notification', (message) => {
      if (message.channel !== channel || !message.payload) return;
      try {
        const { origin, type, detail } = JSON.parse(message.payload) as { origin: string; type: string; detail: unknown };
        if (origin !== this.origin) this.deliver(type, detail);
      } catch (error) {
        this.logger.warn({ err: (error as Error).message }, 'a sync event from another instance could not be read');
      }
    });
    client.on('error', (error: Error) => {
      this.logger.warn({ err: error.message }, 'sync event listener lost PostgreSQL; reconnecting');
      if (this.listener === client) this.listener = null;
      this.schedule(() => this.listen());
    });
    await client.connect();
    await client.query(`LISTEN ${channel}`);
    this.listener = client;
  }

  private schedule(step: () => Promise<void>): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      step().catch((error: Error) => {
        this.logger.warn({ err: error.message }, 'sync event connection to PostgreSQL still down');
        this.schedule(step);
      });
    }, 1000);
    this.retries.add(timer);
  }
}
