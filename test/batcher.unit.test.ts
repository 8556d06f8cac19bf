import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Batcher } from '../src/sync/batcher.js';

/** A batch function whose batches the test answers by hand. */
function controlled() {
  const batches: { keys: number[]; answer(values: string[]): void; fail(error: Error): void }[] = [];
  const load = (keys: number[]) =>
    new Promise<string[]>((resolve, reject) => batches.push({ keys, answer: resolve, fail: reject }));
  return { batches, load };
}

describe('Batcher: one batch at a time', () => {
  it('keys given in one turn go together at the end of it, in order, each answered with its own value', async () => {
    const { batches, load } = controlled();
    const batcher = new Batcher(load, { eager: 100, max: 100 });
    const answers = [1, 2, 3].map((key) => batcher.load(key));
    expect(batches).toHaveLength(0);
    await nextTurn();
    expect(batches.map((batch) => batch.keys)).toEqual([[1, 2, 3]]);
    batches[0]!.answer(['one', 'two', 'three']);
    expect(await Promise.all(answers)).toEqual(['one', 'two', 'three']);
  });

  it('keys given while a batch is out wait, then go together as soon as it is back', async () => {
    const { batches, load } = controlled();
    const batcher = new Batcher(load, { eager: 100, max: 100 });
    const first = batcher.load(1);
    await nextTurn();
    const later = [2, 3, 4].map((key) => batcher.load(key));
    await nextTurn();
    await nextTurn();
    expect(batches).toHaveLength(1);
    batches[0]!.answer(['a']);
    await first;
    await nextTurn();
    expect(batches.map((batch) => batch.keys)).toEqual([[1], [2, 3, 4]]);
    batches[1]!.answer(['b', 'c', 'd']);
    expect(await Promise.all(later)).toEqual(['b', 'c', 'd']);
  });

  it('with nothing out, `eager` waiting keys go at once, without waiting for the end of the turn', () => {
    const { batches, load } = controlled();
    const batcher = new Batcher(load, { eager: 3, max: 100 });
    void batcher.load(1);
    void batcher.load(2);
    expect(batches).toHaveLength(0);
    void batcher.load(3);
    return Promise.resolve().then(() => expect(batches.map((batch) => batch.keys)).toEqual([[1, 2, 3]]));
  });

  it('a batch holds at most `max` keys; a failed batch rejects its own keys only; a wrong count rejects the batch', async () => {
    const { batches, load } = controlled();
    const batcher = new Batcher(load, { eager: 100, max: 2 });
    const answers = [1, 2, 3].map((key) => batcher.load(key).catch((error: Error) => `failed: ${error.message}`));
    await nextTurn();
    expect(batches.map((batch) => batch.keys)).toEqual([[1, 2]]);
    batches[0]!.fail(new Error('database down'));
    await nextTurn();
    expect(batches.map((batch) => batch.keys)).toEqual([[1, 2], [3]]);
    batches[1]!.answer(['x', 'extra']);
    expect(await Promise.all(answers)).toEqual(['failed: database down', 'failed: database down', 'failed: a batch of 1 keys was answered with 2 values']);
  });
});
