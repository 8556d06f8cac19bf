import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * One host:port in front of two test servers, as GitLab is one host for its web pages, API and
 * git over HTTPS: requests go to the first route whose predicate takes the path, else to
 * `fallback`. A credential connected by OAuth is for the provider's host (GITLAB_URL), so a
 * repository cloned with it must live on that same host: the fake GitLab API answers /api/v4 and
 * /oauth, the git smart-HTTP server everything else. Bodies and headers pass through untouched.
 */
export interface HostProxy {
  readonly url: string;
  close(): Promise<void>;
}

export interface ProxyRoute {
  matches(path: string): boolean;
  /** Origin of the server behind, http://127.0.0.1:<port>. */
  target: string;
}

export async function startHostProxy(routes: ProxyRoute[], fallback: string): Promise<HostProxy> {
  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://proxy.test').pathname;
    const target = new URL(routes.find((route) => route.matches(path))?.target ?? fallback);
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.once('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  };
  const server = createServer(forward);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
