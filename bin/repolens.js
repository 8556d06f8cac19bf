#!/usr/bin/env node
// The service is written in TypeScript and runs through tsx's loader, so
// `npm ci && npm start` needs no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
