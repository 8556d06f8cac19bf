import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

export interface GraphQLErrorShape {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string };
}

export class GraphQLRequestError extends Error {
  constructor(readonly errors: GraphQLErrorShape[]) {
    super(errors.map((error) => `${error.extensions?.code ?? '?'}: ${error.message}`).join('; '));
  }
  get code(): string | undefined {
    return this.errors[0]?.extensions?.code;
  }
}

/** A GraphQL client for one tenant's token against a running server. */
export class TestClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string | null,
  ) {}

  async raw<TResult, TVariables>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables?: TVariables,
  ): Promise<ExecutionResult<TResult> & { status: number }> {
    const response = await fetch(`${this.baseUrl}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: JSON.stringify({ query: print(document), variables }),
    });
    return { ...((await response.json()) as ExecutionResult<TResult>), status: response.status };
  }

  /** Data, or throws GraphQLRequestError carrying the errors. */
  async request<TResult, TVariables>(document: TypedDocumentNode<TResult, TVariables>, variables?: TVariables): Promise<TResult> {
    const result = await this.raw(document, variables);
    if (result.errors?.length) throw new GraphQLRequestError(result.errors as unknown as GraphQLErrorShape[]);
    return result.data as TResult;
  }

  /** Same, expecting failure: returns the first error's extensions.code. */
  async errorCode<TResult, TVariables>(document: TypedDocumentNode<TResult, TVariables>, variables?: TVariables): Promise<string> {
    const result = await this.raw(document, variables);
    const code = (result.errors?.[0] as unknown as GraphQLErrorShape | undefined)?.extensions?.code;
    if (!code) throw new Error(`expected an error, got ${JSON.stringify(result.data)}`);
    return code;
  }

  wsClient(options: { authorization?: string | null } = {}): Client {
    const authorization = options.authorization === undefined ? (this.token ? `Bearer ${this.token}` : null) : options.authorization;
    return createClient({
      url: `${this.baseUrl.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      lazy: true,
      retryAttempts: 0,
      connectionParams: authorization ? { authorization } : {},
    });
  }

  /** Subscribes over graphql-ws and collects events until `until` says stop (or the timeout). */
  subscribe<TResult, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
  ): Subscription<TResult> {
    return new Subscription<TResult>(this.wsClient(), document as TypedDocumentNode<TResult, Record<string, unknown>>, variables);
  }
}

export class Subscription<TResult> {
  readonly events: TResult[] = [];
  readonly errors: unknown[] = [];
  /** The server ended the stream with `complete` (not an error, not a dropped socket). */
  completed = false;
  private waiters: { predicate: (events: TResult[]) => boolean; resolve: () => void }[] = [];
  private readonly dispose: () => void;

  constructor(
    private readonly client: Client,
    document: TypedDocumentNode<TResult, Record<string, unknown>>,
    variables: Record<string, unknown>,
  ) {
    this.dispose = client.subscribe<TResult>(
      { query: print(document), variables },
      {
        next: (result) => {
          if (result.errors?.length) this.errors.push(...result.errors);
          if (result.data) this.events.push(result.data as TResult);
          this.check();
        },
        error: (error) => {
          this.errors.push(error);
          this.check();
        },
        complete: () => {
          this.completed = true;
          this.check();
        },
      },
    );
  }

  /** Resolves once the collected events satisfy the predicate (or errors arrive). */
  async waitFor(predicate: (events: TResult[]) => boolean, timeoutMs = 30_000): Promise<TResult[]> {
    if (predicate(this.events)) return this.events;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`subscription condition not met in ${timeoutMs} ms; got ${JSON.stringify(this.events)} errors ${JSON.stringify(this.errors)}`)),
        timeoutMs,
      );
      this.waiters.push({
        predicate: (events) => predicate(events) || this.errors.length > 0,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
    return this.events;
  }

  async close(): Promise<void> {
    this.dispose();
    await this.client.dispose();
  }

  private check(): void {
    this.waiters = this.waiters.filter((waiter) => {
      if (!waiter.predicate(this.events)) return true;
      waiter.resolve();
      return false;
    });
  }
}
