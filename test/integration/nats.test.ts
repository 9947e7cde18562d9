import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { startNats, type NatsHandle } from '../helpers/nats.ts';

describe('test harness: startNats', () => {
  let nats: NatsHandle;
  beforeAll(async () => { nats = await startNats(); });
  afterAll(async () => { await nats?.stop(); });

  it('gives a real server with JetStream: KV put then get returns the value', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const kv = await new Kvm(nc).create(`harness-${process.pid}`);
      const rev = await kv.put('node.a', new TextEncoder().encode('alive'));
      const e = await kv.get('node.a');
      expect(e?.revision).toBe(rev);
      expect(e?.string()).toBe('alive');
      // compare-and-set: an update against a stale revision must fail
      await kv.update('node.a', new TextEncoder().encode('busy'), rev);
      await expect(kv.update('node.a', new TextEncoder().encode('x'), rev)).rejects.toThrow();
    } finally {
      await nc.close();
    }
  });
});
