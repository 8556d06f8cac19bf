import { getOperationAST, GraphQLError, Kind, type DocumentNode, type FieldNode, type FragmentDefinitionNode, type SelectionSetNode } from 'graphql';

export interface TokenLimitOptions {
  /** Root mutation fields a token may run per minute (a bucket that refills continuously); 0: no limit. */
  mutationsPerMinute: number;
  /** Subscriptions a token may hold open at once (on this instance); 0: no limit. */
  maxSubscriptionsPerToken: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** A request refused by a limit: its extensions (code, reason, HTTP status) reach the client as they are. */
export class LimitError extends GraphQLError {}

/** A refused request: FORBIDDEN (SPEC §4's codes) with the reason and, for a rate, when to come back. */
export function limitError(reason: 'RATE_LIMITED' | 'TOO_MANY_SUBSCRIPTIONS', message: string, retryAfterSeconds?: number): LimitError {
  return new LimitError(message, {
    extensions: {
      code: 'FORBIDDEN',
      reason,
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      http: { status: 429, ...(retryAfterSeconds === undefined ? {} : { headers: { 'Retry-After': String(retryAfterSeconds) } }) },
    },
  });
}

/**
 * Per-token limits of SPEC §6 that the schema cannot express: a rate of
 * mutations (each root field counts, so aliases do not multiply a request's
 * worth) and a cap on open subscriptions. Kept in this process: with several
 * instances each enforces its own share.
 */
export class TokenLimits {
  private readonly buckets = new Map<string, Bucket>();
  private readonly subscriptions = new Map<string, number>();

  constructor(
    private readonly options: TokenLimitOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes `count` mutations from the token's bucket, or throws the error that says when to retry. */
  takeMutations(tokenId: string, count: number): void {
    const capacity = this.options.mutationsPerMinute;
    if (capacity <= 0 || count === 0) return;
    if (count > capacity) {
      throw limitError('RATE_LIMITED', `one request may run at most ${capacity} mutations (it has ${count})`);
    }
    const now = this.now();
    const perMs = capacity / 60_000;
    const bucket = this.buckets.get(tokenId) ?? { tokens: capacity, at: now };
    bucket.tokens = Math.min(capacity, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    if (bucket.tokens < count) {
      this.buckets.set(tokenId, bucket);
      const retryAfterSeconds = Math.max(1, Math.ceil((count - bucket.tokens) / perMs / 1000));
      throw limitError('RATE_LIMITED', `too many mutations with this token (at most ${capacity} a minute); retry in ${retryAfterSeconds} s`, retryAfterSeconds);
    }
    bucket.tokens -= count;
    this.buckets.set(tokenId, bucket);
    if (this.buckets.size > 10_000) this.forgetFull(now);
  }

  /** Counts a new subscription of the token; the returned function ends it (once). Throws at the cap. */
  openSubscription(tokenId: string): () => void {
    const cap = this.options.maxSubscriptionsPerToken;
    const open = this.subscriptions.get(tokenId) ?? 0;
    if (cap > 0 && open >= cap) {
      throw limitError('TOO_MANY_SUBSCRIPTIONS', `this token already holds ${open} subscriptions (at most ${cap})`);
    }
    this.subscriptions.set(tokenId, open + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.subscriptions.get(tokenId) ?? 1) - 1;
      if (left > 0) this.subscriptions.set(tokenId, left);
      else this.subscriptions.delete(tokenId);
    };
  }

  /** Subscriptions open for a token, or for all of them. */
  openSubscriptions(tokenId?: string): number {
    if (tokenId !== undefined) return this.subscriptions.get(tokenId) ?? 0;
    let total = 0;
    for (const count of this.subscriptions.values()) total += count;
    return total;
  }

  /** Buckets that have refilled are the same as no bucket: dropped so the map stays small. */
  private forgetFull(now: number): void {
    const perMs = this.options.mutationsPerMinute / 60_000;
    for (const [tokenId, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.at) * perMs >= this.options.mutationsPerMinute) this.buckets.delete(tokenId);
    }
  }
}

/** The fields of a selection set, with inline fragments and fragment spreads taken in place (each spread once per path). */
function* fieldsOf(set: SelectionSetNode, fragments: ReadonlyMap<string, FragmentDefinitionNode>, seen: ReadonlySet<string> = new Set()): Generator<FieldNode> {
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) yield selection;
    else if (selection.kind === Kind.INLINE_FRAGMENT) yield* fieldsOf(selection.selectionSet, fragments, seen);
    else if (!seen.has(selection.name.value)) {
      // Validation refuses fragment cycles before anything executes; `seen` keeps this walk finite regardless.
      const fragment = fragments.get(selection.name.value);
      if (fragment) yield* fieldsOf(fragment.selectionSet, fragments, new Set([...seen, selection.name.value]));
    }
  }
}

function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  return new Map(
    document.definitions.filter((definition): definition is FragmentDefinitionNode => definition.kind === Kind.FRAGMENT_DEFINITION).map((fragment) => [fragment.name.value, fragment]),
  );
}

/** The root fields of the operation a request runs, when it is a mutation; 0 otherwise. */
export function mutationFieldCount(document: DocumentNode, operationName?: string | null): number {
  const operation = getOperationAST(document, operationName);
  if (operation?.operation !== 'mutation') return 0;
  return [...fieldsOf(operation.selectionSet, fragmentsOf(document))].length;
}

/** Weights of the cost estimate (graphql-armor's defaults): an object 2, a scalar 1, each level down × 1.5. */
const objectCost = 2;
const scalarCost = 1;
const depthFactor = 1.5;

/**
 * Estimated cost of the operation a request runs, with its variables: a
 * field with a selection costs 2 plus 1.5 × its children, a scalar 1, and a
 * list asked with `first`/`last` multiplies its subtree by that count, the
 * value of a variable included (graphql-armor's cost rule reads literals only,
 * so `first: $n` would cost 1); without either, the default page size.
 */
export function queryCost(document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown> | null | undefined, defaultPageSize: number): number {
  const operation = getOperationAST(document, operationName);
  if (!operation) return 0;
  const fragments = fragmentsOf(document);
  const pageOf = (field: FieldNode): number => {
    const argument = field.arguments?.find((candidate) => candidate.name.value === 'first' || candidate.name.value === 'last');
    if (!argument) return field.arguments?.some((candidate) => candidate.name.value === 'after' || candidate.name.value === 'before') || isConnection(field) ? defaultPageSize : 1;
    const value = argument.value.kind === Kind.INT ? Number(argument.value.value) : argument.value.kind === Kind.VARIABLE ? Number(variables?.[argument.value.name.value] ?? defaultPageSize) : 1;
    return Number.isFinite(value) && value > 1 ? value : 1;
  };
  const selectionCost = (set: SelectionSetNode): number => {
    let total = 0;
    for (const field of fieldsOf(set, fragments)) {
      if (field.name.value.startsWith('__')) continue;
      total += field.selectionSet ? (objectCost + depthFactor * selectionCost(field.selectionSet)) * pageOf(field) : scalarCost;
    }
    return total;
  };
  return selectionCost(operation.selectionSet);
}

/** A connection field asked without first/last gets the default page: Relay's `edges` below it tells. */
function isConnection(field: FieldNode): boolean {
  return Boolean(field.selectionSet?.selections.some((selection) => selection.kind === Kind.FIELD && (selection.name.value === 'edges' || selection.name.value === 'nodes')));
}

/** Yoga plugin: an operation whose estimated cost (queryCost) is over `maxCost` is refused before it runs. */
export function useQueryCostLimit(maxCost: number, defaultPageSize: number) {
  const check = (args: { document: DocumentNode; operationName?: string | null | undefined; variableValues?: Record<string, unknown> | null | undefined }): GraphQLError | null => {
    const cost = queryCost(args.document, args.operationName, args.variableValues, defaultPageSize);
    if (cost <= maxCost) return null;
    return new GraphQLError(`the query's estimated cost ${Math.round(cost)} is over the limit of ${maxCost}: ask for smaller pages or fewer nested lists`, {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  };
  return {
    onExecute({ args, setResultAndStopExecution }: { args: Parameters<typeof check>[0]; setResultAndStopExecution: (result: { errors: GraphQLError[] }) => void }) {
      const error = check(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }: { args: Parameters<typeof check>[0]; setResultAndStopExecution: (result: { errors: GraphQLError[] }) => void }) {
      const error = check(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

/** Yoga plugin: each mutation request takes its root fields from the token's bucket before it executes. */
export function useMutationRateLimit(limits: TokenLimits) {
  return {
    onExecute({
      args,
      setResultAndStopExecution,
    }: {
      args: { document: DocumentNode; operationName?: string | null | undefined; contextValue: unknown };
      setResultAndStopExecution: (result: { errors: GraphQLError[] }) => void;
    }) {
      const count = mutationFieldCount(args.document, args.operationName);
      if (!count) return;
      const tokenId = (args.contextValue as { tokenId?: string }).tokenId;
      if (!tokenId) return;
      try {
        limits.takeMutations(tokenId, count);
      } catch (error) {
        if (error instanceof GraphQLError) setResultAndStopExecution({ errors: [error] });
        else throw error;
      }
    },
  };
}

/**
 * An async iterator that calls `release` once when it ends, however it ends
 * (done, return() from a client that went away, throw()), even if it was
 * never started, which an async generator's `finally` would miss.
 */
export function releasing<T>(source: AsyncIterator<T>, release: () => void): AsyncIterableIterator<T> {
  const done = (): IteratorReturnResult<undefined> => ({ done: true, value: undefined });
  const iterator: AsyncIterableIterator<T> = {
    async next() {
      try {
        const result = await source.next();
        if (result.done) release();
        return result;
      } catch (error) {
        release();
        throw error;
      }
    },
    async return() {
      release();
      await source.return?.();
      return done();
    },
    async throw(error?: unknown) {
      release();
      if (source.throw) return source.throw(error);
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
