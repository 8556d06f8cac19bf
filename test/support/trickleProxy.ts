import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of another server (S3Proxy, say) that can
 * trickle what the client sends: a slow uplink, so that an upload is still
 * under way when a test kills its sender. The server's answers always pass at
 * full speed. The proxy reads the HTTP/1.1 request lines going through it, so
 * that a test can throttle from one request on (`trickle(rate, { from })`) and
 * see which requests were made.
 */
export interface TrickleProxy {
  /** `http://127.0.0.1:<port>`: what the client is pointed at. */
  readonly url: string;
  readonly port: number;
  /**
   * Client→server bytes from now on pass at `bytesPerSecond`; null: full speed (the default).
   * With `from`, a connection is throttled only once a request whose line ("PUT /bucket/key HTTP/1.1") matches has passed,
   * its headers included; the other connections go at full speed.
   */
  trickle(bytesPerSecond: number | null, options?: { from?: RegExp }): void;
  /** Request lines seen so far, in order ("PUT /bucket/key?uploadId=… HTTP/1.1"). */
  requests(): string[];
  /** Client→server bytes forwarded so far. */
  bytesUp(): number;
  /** Client→server bytes forwarded on throttled connections since they were throttled. */
  bytesTrickled(): number;
  /** Connections open now. */
  openConnections(): number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** How often a throttled connection sends its share (rate × tick). */
const tickMs = 50;
/** Bytes kept from a chunk's end to find a request line split across chunks. */
const carried = 1024;
const requestLine = /(?:GET|PUT|POST|HEAD|DELETE|PATCH|OPTIONS) \S+ HTTP\/1\.[01]\r\n/g;

export async function startTrickleProxy(target: string | { host: string; port: number }): Promise<TrickleProxy> {
  const upstream = typeof target === 'string' ? new URL(target) : null;
  const host = upstream ? upstream.hostname : (target as { host: string }).host;
  const port = upstream ? Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80)) : (target as { port: number }).port;

  let rate: number | null = null;
  let from: RegExp | null = null;
  const seen: string[] = [];
  let up = 0;
  let trickled = 0;
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  const relay = (client: Socket) => {
    const server = connect({ host, port });
    sockets.add(client);
    sockets.add(server);
    clients.add(client);
    client.once('close', () => (sockets.delete(client), clients.delete(client)));
    server.once('close', () => sockets.delete(server));
    // A side that fails takes the other one down at once (as a reset would); a clean end is passed on.
    client.once('error', () => server.destroy());
    server.once('error', () => client.destroy());
    // server → client: full speed; its end ends the client's side once written.
    server.pipe(client);
    server.once('close', () => {
      if (!client.destroyed) client.end();
    });

    // client → server, slice by slice when throttled.
    let throttled = false;
    let tail = '';
    const forward = async () => {
      for await (const chunk of client as AsyncIterable<Buffer>) {
        // latin1: one character per byte, so that offsets in the text are offsets in the chunk.
        const text = tail + chunk.toString('latin1');
        let throttleAt: number | null = null;
        for (const match of text.matchAll(requestLine)) {
          const end = match.index + match[0].length;
          // Wholly within the carried tail: counted with the chunk before.
          if (end <= tail.length) continue;
          seen.push(match[0].trimEnd());
          if (!throttled && throttleAt === null && from?.test(match[0])) {
            // From the end of this request's headers (or of the chunk).
            const headersEnd = text.indexOf('\r\n\r\n', end);
            throttleAt = Math.max(0, (headersEnd === -1 ? text.length : headersEnd + 4) - tail.length);
          }
        }
        tail = text.slice(-carried);
        let offset = 0;
        if (!throttled && throttleAt !== null) {
          await write(server, chunk.subarray(0, throttleAt));
          offset = throttleAt;
          throttled = true;
        }
        while (offset < chunk.length) {
          const bytesPerSecond = rate;
          if (bytesPerSecond === null || (from !== null && !throttled)) {
            await write(server, chunk.subarray(offset));
            break;
          }
          const slice = chunk.subarray(offset, offset + Math.max(1, Math.floor((bytesPerSecond * tickMs) / 1000)));
          await write(server, slice);
          trickled += slice.length;
          offset += slice.length;
          await sleep(tickMs);
        }
      }
    };
    const write = async (socket: Socket, bytes: Buffer) => {
      if (!bytes.length || socket.destroyed) return;
      up += bytes.length;
      if (!socket.write(bytes)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
    };
    forward().then(
      () => {
        if (!server.destroyed) server.end();
      },
      () => server.destroy(),
    );
  };

  const listener: Server = createServer({ allowHalfOpen: true }, relay);
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const address = listener.address();
  const listening = typeof address === 'object' && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${listening}`,
    port: listening,
    trickle(bytesPerSecond, options = {}) {
      rate = bytesPerSecond;
      // Not global: test() must not carry lastIndex from one request line to the next.
      from = options.from ? new RegExp(options.from.source, options.from.flags.replace(/[gy]/g, '')) : null;
    },
    requests: () => [...seen],
    bytesUp: () => up,
    bytesTrickled: () => trickled,
    openConnections: () => clients.size,
    async close() {
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      clients.clear();
      await closed;
    },
  };
}
