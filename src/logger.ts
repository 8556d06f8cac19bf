import { pino, type Logger } from 'pino';
import { redactSecrets } from './sync/redact.js';

export type { Logger };

/**
 * Every log line passes through redactSecrets, so a credential that slipped
 * into a message or an error (a URL with userinfo, an Authorization header)
 * never reaches the output.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: ['req.headers.authorization', 'authorization', 'token', 'password', '*.password'], censor: '***' },
      hooks: {
        streamWrite: (line) => redactSecrets(line),
      },
    },
    destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
