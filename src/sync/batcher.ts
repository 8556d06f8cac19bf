/**
 * One batch at a time to the database. Keys given while a batch is out wait
 * and go together in the next one, as soon as it is back: under a burst,
 * everything that arrives during a round trip shares one statement. With
 * nothing out, a batch goes at the end of the event-loop turn, or at once
 * when `eager` keys are waiting, so that the first deliveries of a burst do not
 * wait for every request the same turn reads.
 */
export class Batcher<K, V> {
  private queue: { key: K; resolve(value: V): void; reject(error: unknown): void }[] = [];
  private inFlight = false;
  private scheduled = false;

  constructor(
    private readonly loadBatch: (keys: K[]) => Promise<V[]>,
    private readonly options: { eager: number; max: number },
  ) {}

  load(key: K): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      this.queue.push({ key, resolve, reject });
      if (this.inFlight) return;
      if (this.queue.length >= this.options.eager) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.max);
    this.inFlight = true;
    Promise.resolve()
      .then(() => this.loadBatch(batch.map((entry) => entry.key)))
      .then((values) => {
        if (values.length !== batch.length) throw new Error(`a batch of ${batch.length} keys was answered with ${values.length} values`);
        batch.forEach((entry, index) => entry.resolve(values[index]!));
      })
      .catch((error: unknown) => batch.forEach((entry) => entry.reject(error)))
      .finally(() => {
        this.inFlight = false;
        this.flush();
      });
  }
}
