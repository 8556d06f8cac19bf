/**
 * When a repository is checked next (SPEC §1 "Scheduling"): polling is the
 * fallback to webhooks, so the interval follows how often upstream changes.
 */
export const minIntervalMs = 60_000;
export const maxIntervalMs = 8 * 60 * 60_000;
export const maxConsecutiveFailures = 14;
/** A webhook delivered within this long counts as working: polling drops to the safety net. */
export const webhookTrustMs = 7 * 24 * 60 * 60_000;

/** Whether the repository's webhook delivered recently enough to be relied on. */
export function webhookActive(lastWebhookAt: Date | null, now: Date): boolean {
  return lastWebhookAt !== null && now.getTime() - lastWebhookAt.getTime() < webhookTrustMs;
}

export interface ScheduleInput {
  now: Date;
  /** Last time upstream was seen to change (or when the repository was added). */
  lastChangedAt: Date;
  consecutiveFailures: number;
  /** When a webhook last delivered: recently ⇒ polling is only a safety net. */
  lastWebhookAt?: Date | null;
  random?: () => number;
}

/** null: scheduled checks stop until a manual sync or a webhook succeeds. */
export function nextCheckAt(input: ScheduleInput): Date | null {
  if (input.consecutiveFailures >= maxConsecutiveFailures) return null;
  const sinceChange = Math.max(0, input.now.getTime() - input.lastChangedAt.getTime());
  let interval = webhookActive(input.lastWebhookAt ?? null, input.now) ? maxIntervalMs : clamp(sinceChange / 2);
  if (input.consecutiveFailures > 0) interval = clamp(Math.max(interval, minIntervalMs) * 2 ** input.consecutiveFailures);
  const jitter = 1 + ((input.random ?? Math.random)() * 2 - 1) * 0.05;
  return new Date(input.now.getTime() + interval * jitter);
}

function clamp(ms: number): number {
  return Math.min(maxIntervalMs, Math.max(minIntervalMs, ms));
}
