// Starts a coordinator process: NATS_URL (or --nats), PHOS_OTLP_ENDPOINT (or --otlp) and PHOS_LOG_LEVEL from the environment.
import { parseArgs } from 'node:util';
import { createLogger } from '../../../common/src/index.ts';
import { Coordinator } from './coordinator.ts';

const { values } = parseArgs({ options: { nats: { type: 'string' }, 'heartbeat-ms': { type: 'string' }, otlp: { type: 'string' } } });
const log = createLogger({ service: 'coordinator' });
const c = await Coordinator.start({
  natsUrl: values.nats, heartbeatMs: values['heartbeat-ms'] ? Number(values['heartbeat-ms']) : undefined, otlpEndpoint: values.otlp,
}, log);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void c.stop().then(() => process.exit(0)); });
