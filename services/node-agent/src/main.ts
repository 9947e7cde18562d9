// Starts the node agent: reads the YAML config (--config FILE, else PHOS_AGENT_CONFIG, else defaults
// with flag overrides), makes the root logger, runs until SIGINT/SIGTERM. Nothing else has side effects.
import { parseArgs } from 'node:util';
import { createLogger } from '../../../common/src/index.ts';
import { PhosError, toPhosError } from '../../../proto/src/index.ts';
import { Agent } from './agent.ts';
import { compileAgentOptions, loadAgentConfig, type AgentOptions } from './agent-options.ts';

async function main(): Promise<void> {
  let values;
  try {
    values = parseArgs({
      args: process.argv.slice(2), strict: true,
      options: {
        config: { type: 'string' }, socket: { type: 'string' }, 'control-socket': { type: 'string' }, 'state-dir': { type: 'string' },
        node: { type: 'string' }, 'pid-range': { type: 'string' }, libcuda: { type: 'string' },
      },
    }).values;
  } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos agent --help' });
  }
  const file = values.config ?? process.env.PHOS_AGENT_CONFIG;
  const base: AgentOptions = file ? loadAgentConfig(file) : {};
  const o = compileAgentOptions({
    ...base,
    ...(values.socket ? { socket: values.socket } : {}),
    ...(values['control-socket'] ? { controlSocket: values['control-socket'] } : {}),
    ...(values['state-dir'] ? { stateDir: values['state-dir'] } : {}),
    ...(values.node ? { node: values.node } : {}),
    ...(values['pid-range'] ? { pidRange: values['pid-range'] } : {}),
    ...(values.libcuda ? { libcuda: values.libcuda } : {}),
  });
  const log = createLogger({ service: 'agent', node: o.node });
  const agent = new Agent(o, log);
  await agent.start();
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'agent stopping');
    agent.stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  const e = toPhosError(err);
  process.stderr.write(`error ${e.code}: ${e.message}\nremedy: ${e.remedy}\n`);
  process.exit(e.exitCode);
});
