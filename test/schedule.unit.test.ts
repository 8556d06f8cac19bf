import { describe, expect, it } from 'vitest';
import { maxConsecutiveFailures, maxIntervalMs, minIntervalMs, nextCheckAt, webhookActive, webhookTrustMs } from '../src/sync/schedule.js';

const now = new Date('2026-01-01T12:00:00Z');
const hours = (h: number) => h * 60 * 60_000;
const at = (msAgo: number) => new Date(now.getTime() - msAgo);
const delay = (date: Date | null) => (date ? date.getTime() - now.getTime() : null);

describe('nextCheckAt', () => {
  it('waits half the time since the last upstream change', () => {
    expect(delay(nextCheckAt({ now, lastChangedAt: at(hours(2)), consecutiveFailures: 0, random: () => 0.5 }))).toBe(hours(1));
  });

  it('stays within [1 min, 8 h]', () => {
    expect(delay(nextCheckAt({ now, lastChangedAt: at(5_000), consecutiveFailures: 0, random: () => 0.5 }))).toBe(minIntervalMs);
    expect(delay(nextCheckAt({ now, lastChangedAt: at(hours(100)), consecutiveFailures: 0, random: () => 0.5 }))).toBe(maxIntervalMs);
  });

  it('adds at most ±5% jitter', () => {
    expect(delay(nextCheckAt({ now, lastChangedAt: at(hours(2)), consecutiveFailures: 0, random: () => 0 }))).toBe(hours(0.95));
    expect(delay(nextCheckAt({ now, lastChangedAt: at(hours(2)), consecutiveFailures: 0, random: () => 1 }))).toBe(hours(1.05));
  });

  it('doubles the interval per consecutive failure, capped at 8 h', () => {
    const base = { now, lastChangedAt: at(hours(2)), random: () => 0.5 };
    expect(delay(nextCheckAt({ ...base, consecutiveFailures: 1 }))).toBe(hours(2));
    expect(delay(nextCheckAt({ ...base, consecutiveFailures: 2 }))).toBe(hours(4));
    expect(delay(nextCheckAt({ ...base, consecutiveFailures: 6 }))).toBe(maxIntervalMs);
  });

  it('stops scheduled checks after 14 consecutive failures', () => {
    expect(nextCheckAt({ now, lastChangedAt: at(hours(2)), consecutiveFailures: maxConsecutiveFailures - 1 })).not.toBeNull();
    expect(nextCheckAt({ now, lastChangedAt: at(hours(2)), consecutiveFailures: maxConsecutiveFailures })).toBeNull();
  });

  it('polls rarely when webhooks deliver', () => {
    expect(delay(nextCheckAt({ now, lastChangedAt: at(60_000), consecutiveFailures: 0, lastWebhookAt: at(hours(1)), random: () => 0.5 }))).toBe(maxIntervalMs);
    // A hook silent for longer than the trust window: polling follows upstream changes again.
    expect(delay(nextCheckAt({ now, lastChangedAt: at(60_000), consecutiveFailures: 0, lastWebhookAt: at(webhookTrustMs), random: () => 0.5 }))).toBe(minIntervalMs);
  });

  it('counts a webhook as working for a week after its last delivery', () => {
    expect(webhookActive(null, now)).toBe(false);
    expect(webhookActive(at(hours(1)), now)).toBe(true);
    expect(webhookActive(at(webhookTrustMs - 1), now)).toBe(true);
    expect(webhookActive(at(webhookTrustMs), now)).toBe(false);
  });
});
