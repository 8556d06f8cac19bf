import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { mutationFieldCount, queryCost, TokenLimits } from '../src/schema/limits.js';

// Issue 7 item 3: the cost estimate behind REPOLENS_GRAPHQL_MAX_COST and the
// per-token bucket behind REPOLENS_MUTATIONS_PER_MINUTE.

const defaults = loadConfig({}).limits;
const cost = (query: string, variables?: Record<string, unknown>) => queryCost(parse(query), undefined, variables, 20);

describe('query cost', () => {
  const richNode = 'id path language lines bytes sha symbols { name kind } imports { module }';

  it('the default limit takes a full page of 100 rich nodes and refuses 100 × 100 nested pages', () => {
    const page = cost(`{ repositories(first: 100) { edges { cursor node { ${richNode} } } pageInfo { hasNextPage endCursor } } }`);
    expect(page).toBeLessThan(defaults.maxCost);
    const bomb = cost(`{ projects(first: 100) { edges { node { id repositories(first: 100) { edges { node { id } } } } } } }`);
    expect(bomb).toBeGreaterThan(defaults.maxCost);
    expect(defaults.maxCost).toBe(50_000);
  });

  it('page sizes in variables count like literals; a missing size is the default page', () => {
    const query = 'query($n: Int) { projects(first: $n) { edges { node { id name } } } }';
    expect(cost(query, { n: 100 })).toBe(cost('{ projects(first: 100) { edges { node { id name } } } }'));
    expect(cost(query, {})).toBe(cost('{ projects(first: 20) { edges { node { id name } } } }'));
    expect(cost('{ projects { edges { node { id name } } } }')).toBe(cost('{ projects(first: 20) { edges { node { id name } } } }'));
    expect(cost(query, { n: 5 })).toBeLessThan(cost(query, { n: 50 }));
  });

  it('fragments cost what their fields cost; introspection fields are free', () => {
    const inline = cost('{ projects(first: 10) { edges { node { id name } } } }');
    expect(cost('{ projects(first: 10) { edges { node { ...F } } } } fragment F on Project { id name }')).toBe(inline);
    expect(cost('{ projects(first: 10) { edges { node { ... on Project { id name } } } } }')).toBe(inline);
    expect(cost('{ __typename projects(first: 10) { __typename edges { node { id name } } } }')).toBe(inline);
  });

  it('counts the root fields of a mutation (aliases each count), and none for a query', () => {
    expect(mutationFieldCount(parse('mutation { a: createProject(input: { name: "a" }) { project { id } } b: createProject(input: { name: "b" }) { project { id } } }'))).toBe(2);
    expect(mutationFieldCount(parse('mutation M { ...F } fragment F on Mutation { createProject(input: { name: "a" }) { project { id } } }'), 'M')).toBe(1);
    expect(mutationFieldCount(parse('{ projects { edges { cursor } } }'))).toBe(0);
    expect(mutationFieldCount(parse('query Q { projects { edges { cursor } } } mutation M { x: createProject(input: { name: "a" }) { project { id } } }'), 'Q')).toBe(0);
  });
});

describe('per-token mutation bucket', () => {
  it('holds a minute of mutations, refills continuously, and says when to retry', () => {
    let now = 0;
    const limits = new TokenLimits({ mutationsPerMinute: 6, maxSubscriptionsPerToken: 0 }, () => now);
    limits.takeMutations('t', 4);
    limits.takeMutations('t', 2);
    expect(() => limits.takeMutations('t', 1)).toThrow(/retry in 10 s/);
    // Another token has its own bucket.
    limits.takeMutations('u', 6);
    now += 10_000;
    limits.takeMutations('t', 1);
    expect(() => limits.takeMutations('t', 1)).toThrow(/at most 6 a minute/);
    // More than a minute's worth in one request is refused outright.
    now += 60_000;
    expect(() => limits.takeMutations('t', 7)).toThrow(/at most 6 mutations \(it has 7\)/);
    limits.takeMutations('t', 6);
  });

  it('0 turns the rate and the subscription cap off', () => {
    const limits = new TokenLimits({ mutationsPerMinute: 0, maxSubscriptionsPerToken: 0 });
    for (let index = 0; index < 1000; index++) limits.takeMutations('t', 100);
    const releases = Array.from({ length: 500 }, () => limits.openSubscription('t'));
    expect(limits.openSubscriptions('t')).toBe(500);
    for (const release of releases) {
      release();
      release();
    }
    expect(limits.openSubscriptions('t')).toBe(0);
  });
});
