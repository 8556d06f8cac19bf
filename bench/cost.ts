import { readFile } from 'node:fs/promises';
import type { GitServer, RepoStats } from '../test/support/gitServer.js';
import type { Service } from './service.js';
import { round } from './timing.js';

export type GitRequests = Omit<RepoStats, 'bytesSent'>;

/** What one side spent per repository, besides wall time. */
export interface Cost {
  /** Smart-HTTP requests the git server answered (each is a git-http-backend process there). */
  git_requests: GitRequests;
  /** The service only: its database transactions (≈ round trips) and CPU, its own and its git children's. */
  db_transactions?: number;
  node_cpu_ms?: number;
  git_cpu_ms?: number;
  /**
   * CPU time every process of the machine spent (git server, git clients, the service, PostgreSQL,
   * the bench itself), from /proc/stat: on a machine with few cores the side that needs more CPU
   * is the slower one, whatever its latency.
   */
  machine_cpu_ms?: number;
}

/** Busy (non-idle, non-iowait) CPU time of the whole machine so far, in ms. */
export async function machineCpuMs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  const ticks = [user, nice, system, irq, softirq, steal].reduce<number>((sum, value) => sum + (value ?? 0), 0);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/** Smart-HTTP requests the git server answered so far, over every repository. */
function gitRequests(server: GitServer): GitRequests {
  const totals: GitRequests = { requests: 0, infoRefs: 0, lsRefs: 0, fetches: 0 };
  for (const stats of server.stats.values()) {
    totals.requests += stats.requests;
    totals.infoRefs += stats.infoRefs;
    totals.lsRefs += stats.lsRefs;
    totals.fetches += stats.fetches;
  }
  return totals;
}

/** Git requests made during `task`, per repository. */
export async function baselineCost<T>(server: GitServer, repositories: number, task: () => Promise<T>): Promise<{ result: T; cost: Cost }> {
  const before = gitRequests(server);
  const machine = await machineCpuMs();
  const result = await task();
  const machineAfter = await machineCpuMs();
  return {
    result,
    cost: {
      git_requests: perRepository(gitRequests(server), before, repositories),
      machine_cpu_ms: round((machineAfter - machine) / repositories, 1),
    },
  };
}

/**
 * Git requests, database transactions and CPU the service spent during
 * `task`, per repository. The transaction count is read (with its ~1 s
 * publication delay) outside the task, so it does not lengthen the timing.
 */
export async function serviceCost<T>(
  service: Service,
  server: GitServer,
  repositories: number,
  task: () => Promise<T>,
): Promise<{ result: T; cost: Cost }> {
  const xacts = await service.serverTransactions();
  const cpu = await service.cpuMs();
  const requests = gitRequests(server);
  const machine = await machineCpuMs();
  const result = await task();
  const machineAfter = await machineCpuMs();
  const cpuAfter = await service.cpuMs();
  const requestsAfter = gitRequests(server);
  const per = (value: number) => round(value / repositories, 1);
  return {
    result,
    cost: {
      git_requests: perRepository(requestsAfter, requests, repositories),
      db_transactions: per((await service.serverTransactions()) - xacts),
      node_cpu_ms: per(cpuAfter.node - cpu.node),
      git_cpu_ms: per(cpuAfter.git - cpu.git),
      machine_cpu_ms: per(machineAfter - machine),
    },
  };
}

function perRepository(after: GitRequests, before: GitRequests, repositories: number): GitRequests {
  const per = (key: keyof GitRequests) => round((after[key] - before[key]) / repositories, 2);
  return { requests: per('requests'), infoRefs: per('infoRefs'), lsRefs: per('lsRefs'), fetches: per('fetches') };
}
