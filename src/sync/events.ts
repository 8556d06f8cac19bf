import { createPubSub, map, pipe, type PubSub } from 'graphql-yoga';
import type { RepositoryStatus, SyncPhase } from '../generated/prisma/enums.js';
import { redactSecrets } from './redact.js';

export interface SyncEventPayload {
  repositoryId: string;
  runId: string | null;
  status: RepositoryStatus;
  phase: SyncPhase;
  progress: number | null;
  message: string | null;
  commitSha: string | null;
  at: Date;
}

/** A run queued by one instance for the instance that owns its repository (SPEC §1 "Several processes"). */
export interface RunQueuedNotice {
  runId: string;
  repositoryId: string;
  host: string;
  priority: number;
}

export type SyncPubSubChannels = {
  syncStatus: [repositoryId: string, payload: SyncEventPayload];
  runQueued: [notice: RunQueuedNotice];
};

export type SyncPubSub = PubSub<SyncPubSubChannels>;

/**
 * The one place sync events are published. Topics are `syncStatus:<id>`;
 * the pubsub's event target can be swapped (e.g. Redis) without touching
 * publishers or subscribers.
 */
export class SyncEvents {
  private endSubscribers!: () => void;
  /** Resolves when the process stops serving: every `syncStatus` stream then completes. */
  readonly ended = new Promise<void>((resolve) => (this.endSubscribers = resolve));

  constructor(readonly pubsub: SyncPubSub = createPubSub<SyncPubSubChannels>()) {}

  /** Shutdown: ends every subscriber's stream, so each client is sent `complete` rather than a dropped socket. */
  endSubscriptions(): void {
    this.endSubscribers();
  }

  publish(event: Omit<SyncEventPayload, 'at' | 'progress' | 'message' | 'commitSha'> & Partial<SyncEventPayload>): SyncEventPayload {
    const payload: SyncEventPayload = {
      progress: null,
      message: null,
      commitSha: null,
      at: new Date(),
      ...event,
    };
    if (payload.message) payload.message = redactSecrets(payload.message);
    this.pubsub.publish('syncStatus', payload.repositoryId, payload);
    return payload;
  }

  /** Tells every instance (this one too) that a run waits for its repository's owner. */
  announceQueued(notice: RunQueuedNotice): void {
    this.pubsub.publish('runQueued', notice);
  }

  queuedNotices(): AsyncIterable<RunQueuedNotice> {
    return this.pubsub.subscribe('runQueued');
  }

  subscribe(repositoryId: string): AsyncIterable<SyncEventPayload> {
    // Events from another instance came as JSON: their time is a string again, made a Date here.
    return pipe(
      this.pubsub.subscribe('syncStatus', repositoryId),
      map((event: SyncEventPayload) => (event.at instanceof Date ? event : { ...event, at: new Date(event.at as unknown as string) })),
    );
  }
}
