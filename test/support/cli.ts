import { expect, type TestContext } from 'vitest';
import { lines, startServer, type CliResult, type ServerOptions, type ServerProcess } from './serverProcess.js';

export const stackLine = /^ {4}at /;

/** A one-line failure: non-zero exit, nothing on stdout, exactly one stderr line and no stack trace. Returns the line. */
export function expectOneLineFailure(result: CliResult): string {
  expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).not.toBe(0);
  expect(result.code).not.toBeNull();
  expect(result.stdout).toBe('');
  const errorLines = lines(result.stderr);
  expect(errorLines, result.stderr).toHaveLength(1);
  expect(errorLines.some((line) => stackLine.test(line))).toBe(false);
  return errorLines[0]!;
}

/** Starts `repolens serve`; the process (and its group) is killed when the test ends, pass or fail. */
export async function serveForTest(context: TestContext, options: ServerOptions): Promise<ServerProcess> {
  const server = await startServer(options);
  context.onTestFinished(async () => {
    server.killGroup('SIGKILL');
    await server.waitForExit(10_000).catch(() => undefined);
  });
  return server;
}
