import { randomUUID } from 'node:crypto';
import neo4j, { type Driver } from 'neo4j-driver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { neo4jTestEnv } from './support/neo4j.js';

/** The run's Neo4j (test/support/neo4j.ts, started by globalSetup) as the service would reach it. */
describe('the test Neo4j server', () => {
  const env = neo4jTestEnv();
  // Its own repository id: other test files use the same server at the same time.
  const repositoryId = `neo4j-server-test-${randomUUID()}`;
  let driver: Driver;

  beforeAll(async () => {
    driver = neo4j.driver(env.NEO4J_URL, neo4j.auth.basic(env.NEO4J_USER, env.NEO4J_PASSWORD));
    await driver.verifyConnectivity();
  });

  afterAll(async () => {
    await driver?.executeQuery('MATCH (n:TestNode {repositoryId: $repositoryId}) DETACH DELETE n', { repositoryId }).catch(() => undefined);
    await driver?.close();
  });

  it('is Neo4j Community 5.26, over Bolt without TLS', async () => {
    expect(env.NEO4J_URL).toMatch(/^bolt:\/\/127\.0\.0\.1:\d+$/);
    const { records } = await driver.executeQuery('CALL dbms.components() YIELD name, versions, edition RETURN name, versions, edition');
    expect(records.map((record) => record.toObject())).toEqual([{ name: 'Neo4j Kernel', versions: [expect.stringMatching(/^5\.26\.\d+$/)], edition: 'community' }]);
  });

  it('wants the password', async () => {
    const wrong = neo4j.driver(env.NEO4J_URL, neo4j.auth.basic(env.NEO4J_USER, `${env.NEO4J_PASSWORD}-wrong`));
    try {
      await expect(wrong.verifyConnectivity()).rejects.toMatchObject({ code: 'Neo.ClientError.Security.Unauthorized' });
    } finally {
      await wrong.close();
    }
  });

  it('creates a constraint, and writes and reads in transactions', async () => {
    // Twice: IF NOT EXISTS makes it a no-op the second time (test files may race to create it).
    for (let i = 0; i < 2; i++) {
      await driver.executeQuery('CREATE CONSTRAINT test_node_key IF NOT EXISTS FOR (n:TestNode) REQUIRE (n.repositoryId, n.key) IS UNIQUE');
    }
    const session = driver.session();
    try {
      const written = await session.executeWrite((tx) =>
        tx.run('CREATE (n:TestNode {repositoryId: $repositoryId, key: $key, size: $size}) RETURN n.key AS key', { repositoryId, key: 'a', size: neo4j.int(42) }),
      );
      expect(written.records.map((record) => record.get('key'))).toEqual(['a']);

      const read = await session.executeRead((tx) => tx.run('MATCH (n:TestNode {repositoryId: $repositoryId}) RETURN n.key AS key, n.size AS size', { repositoryId }));
      expect(read.records.map((record) => ({ key: record.get('key') as string, size: neo4j.integer.toNumber(record.get('size')) }))).toEqual([{ key: 'a', size: 42 }]);

      // The constraint holds.
      await expect(session.executeWrite((tx) => tx.run('CREATE (:TestNode {repositoryId: $repositoryId, key: $key})', { repositoryId, key: 'a' }))).rejects.toMatchObject({
        code: 'Neo.ClientError.Schema.ConstraintValidationFailed',
      });
    } finally {
      await session.close();
    }
  });

  it('keeps nothing of a rolled-back transaction', async () => {
    const session = driver.session();
    try {
      const tx = session.beginTransaction();
      await tx.run('CREATE (:TestNode {repositoryId: $repositoryId, key: $key})', { repositoryId, key: 'rolled-back' });
      // Visible inside the transaction…
      const inside = await tx.run('MATCH (n:TestNode {repositoryId: $repositoryId, key: $key}) RETURN count(n) AS count', { repositoryId, key: 'rolled-back' });
      expect(neo4j.integer.toNumber(inside.records[0]!.get('count'))).toBe(1);
      await tx.rollback();
    } finally {
      await session.close();
    }
    // …and gone after it.
    const { records } = await driver.executeQuery('MATCH (n:TestNode {repositoryId: $repositoryId, key: $key}) RETURN count(n) AS count', { repositoryId, key: 'rolled-back' });
    expect(neo4j.integer.toNumber(records[0]!.get('count'))).toBe(0);
  });
});
