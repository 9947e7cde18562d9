// The agent's unix socket server in pccl: packets and SCM_RIGHTS fds from a separate process (a small C
// client standing in for libphos), peer credentials, replies with fds, the connection lifecycle, and
// abstract names (@name).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTO_VERSION, PhosError, decodeFrame, encodeFrame } from '../../proto/src/index.ts';
import * as pccl from '../../native/pccl/pccl.ts';
import { ADDON_PATH } from '../../native/pccl/pccl.ts';
import { EventQueue, compileC } from '../../native/pccl/test/support.ts';

const STAGING = 64 * 1024;
let dir: string;
let client: string;

function run(bin: string, args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; out: string }> } {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out })));
  return { child, done };
}

function helloFile(): string {
  const bytes = encodeFrame({ v: PROTO_VERSION, t: 'hello', pid: 1, job: 'pccl-test', vaBase: 0x7e0000000000, vaSize: 1 << 30, device: 0, stagingBytes: STAGING });
  const f = join(dir, 'hello.bin');
  writeFileSync(f, bytes);
  return f;
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
}

beforeAll(() => {
  expect(existsSync(ADDON_PATH), `pccl addon missing at ${ADDON_PATH}: run bash deploy/install.sh`).toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'pccl-sock-'));
  client = compileC('agent-client');
});

afterEach(() => pccl.agentServerClose());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pccl agent socket', () => {
  it('delivers a frame with its memfd and the peer credentials, and replies with an fd', async () => {
    const sock = join(dir, 'agent.sock');
    const q = new EventQueue();
    pccl.agentListen(sock, q.push);
    const { child, done } = run(client, [sock, helloFile(), String(STAGING)]);

    const hi = await q.next('connect');
    expect(hi.pid).toBe(child.pid);
    expect(hi.uid).toBe(process.getuid!());
    expect(hi.gid).toBe(process.getgid!());

    const pkt = await q.next('packet', (e) => e.conn === hi.conn);
    expect(decodeFrame(pkt.bytes)).toMatchObject({ t: 'hello', job: 'pccl-test', stagingBytes: STAGING });
    expect(pkt.fds).toHaveLength(1);
    const id = pccl.mapFd(pkt.fds[0]!, STAGING, false);
    pccl.closeFd(pkt.fds[0]!); // the mapping outlives the fd
    expect(pccl.mapRead(id, 0, STAGING).equals(pattern(STAGING))).toBe(true);
    pccl.unmap(id);

    const replyFile = join(dir, 'reply.txt');
    writeFileSync(replyFile, 'phos-reply-fd\n');
    const fd = openSync(replyFile, 'r');
    const welcome = Buffer.from(encodeFrame({ v: PROTO_VERSION, t: 'welcome', node: 'n1' }));
    pccl.agentSend(hi.conn, welcome, [fd]);
    closeSync(fd);

    const { code, out } = await done;
    expect(out).toContain(`reply ${welcome.length} fds 1`);
    expect(out).toContain('fdtext phos-reply-fd');
    expect(code).toBe(0);
    const closed = await q.next('closed', (e) => e.conn === hi.conn);
    expect(closed.reason).toBe('closed by the peer');
  });

  it('ends a connection on agentClose with one closed event, after which sends are NOT_FOUND', async () => {
    const sock = join(dir, 'close.sock');
    const q = new EventQueue();
    pccl.agentListen(sock, q.push);
    const { done } = run(client, [sock, helloFile(), String(STAGING)]);
    const hi = await q.next('connect');
    const pkt = await q.next('packet');
    for (const fd of pkt.fds) pccl.closeFd(fd);

    pccl.agentClose(hi.conn);
    const closed = await q.next('closed', (e) => e.conn === hi.conn);
    expect(closed.reason).toBe('closed by the agent');
    const { code, out } = await done;
    expect(out).toContain('reply 0 fds 0'); // the client saw EOF
    expect(code).toBe(0);

    let err: unknown;
    try {
      pccl.agentSend(hi.conn, Buffer.from('x'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PhosError);
    expect((err as PhosError).code).toBe('NOT_FOUND');
    await new Promise((r) => setTimeout(r, 100));
    expect(q.all.filter((e) => e.type === 'closed' && e.conn === hi.conn)).toHaveLength(1);
  });

  it('carries packets up to 1 MiB to the app', async () => {
    const sock = join(dir, 'big-reply.sock');
    const q = new EventQueue();
    pccl.agentListen(sock, q.push);
    const { done } = run(client, [sock, helloFile(), String(STAGING)]);
    const pkt = await q.next('packet');
    for (const fd of pkt.fds) pccl.closeFd(fd);
    pccl.agentSend(pkt.conn, Buffer.alloc(pccl.MAX_PACKET_BYTES, 1));
    expect((await done).out).toContain(`reply ${pccl.MAX_PACKET_BYTES} fds 0`);
    expect(() => pccl.agentSend(pkt.conn, Buffer.alloc(pccl.MAX_PACKET_BYTES + 1))).toThrow(expect.objectContaining({ code: 'BAD_ARGS' }));
  });

  for (const [mode, reason] of [['big', 'packet larger than 1 MiB'], ['fds17', 'more than 16 fds in one packet']] as const) {
    it(`drops a connection that sends a ${mode === 'big' ? 'packet over 1 MiB' : 'packet with 17 fds'}, closing the fds it carried`, async () => {
      const sock = join(dir, `${mode}.sock`);
      const q = new EventQueue();
      // The client's memfd, as this process would hold it had a received fd leaked.
      const stagingFds = (): number =>
        readdirSync('/proc/self/fd').filter((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:phos-staging');
          } catch {
            return false;
          }
        }).length;
      expect(stagingFds()).toBe(0);
      pccl.agentListen(sock, q.push);
      const { done } = run(client, [sock, helloFile(), String(STAGING), mode]);
      const closed = await q.next('closed');
      expect(closed.reason).toBe(reason);
      expect(q.all.filter((e) => e.type === 'packet')).toHaveLength(0);
      const { out } = await done;
      expect(out).toContain('reply 0 fds 0');
      pccl.agentServerClose();
      expect(stagingFds()).toBe(0); // the fds that came with it were closed, not leaked
    });
  }

  it('replaces a stale socket file but refuses one a live agent still serves', async () => {
    const sock = join(dir, 'stale.sock');
    // Another agent (a plain node process with the addon) listens on the path.
    const other = spawn(process.execPath, ['-e', `require(${JSON.stringify(ADDON_PATH)}).agentListen(${JSON.stringify(sock)}, () => {}); console.log('up'); setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => other.stdout!.once('data', () => resolve()));
    expect(() => pccl.agentListen(sock, () => {})).toThrow(expect.objectContaining({ code: 'ILLEGAL_STATE', message: expect.stringContaining(sock) }));

    other.kill('SIGKILL'); // dies without removing its socket file: stale
    await new Promise((r) => other.once('exit', r));
    expect(existsSync(sock)).toBe(true);
    const q = new EventQueue();
    pccl.agentListen(sock, q.push);
    const { done } = run(client, [sock, helloFile(), String(STAGING)]);
    const pkt = await q.next('packet');
    for (const fd of pkt.fds) pccl.closeFd(fd);
    pccl.agentSend(pkt.conn, Buffer.from('ok'));
    expect((await done).code).toBe(0);
  });

  it('listens on an abstract name (@name): SO_PEERCRED, packets and fds, no file; a held name is ILLEGAL_STATE', async () => {
    const name = `@phos-pccl-test-${process.pid}-${Date.now()}`;
    const q = new EventQueue();
    pccl.agentListen(name, q.push);
    expect(existsSync(name)).toBe(false); // nothing in the cwd: the name lives in the network namespace
    const abstract = readFileSync('/proc/net/unix', 'utf8').split('\n').filter((l) => l.endsWith(` ${name}`));
    expect(abstract, 'listed in /proc/net/unix as @name').toHaveLength(1);
    // Another process holding the same name in this namespace: its listen fails, it does not steal it.
    const other = spawnSync(process.execPath, ['-e', `try { require(${JSON.stringify(ADDON_PATH)}).agentListen(${JSON.stringify(name)}, () => {}); console.log('listening') } catch (e) { console.log(e.code) }`], { encoding: 'utf8' });
    expect(other.stdout.trim()).toBe('ILLEGAL_STATE');

    const { child, done } = run(client, [name, helloFile(), String(STAGING)]);
    const hi = await q.next('connect');
    expect(hi.pid).toBe(child.pid);
    expect(hi.uid).toBe(process.getuid!());
    expect(hi.gid).toBe(process.getgid!());
    const pkt = await q.next('packet', (e) => e.conn === hi.conn);
    expect(decodeFrame(pkt.bytes)).toMatchObject({ t: 'hello', job: 'pccl-test' });
    expect(pkt.fds).toHaveLength(1);
    pccl.closeFd(pkt.fds[0]!);
    pccl.agentSend(hi.conn, Buffer.from('ok'));
    const { code, out } = await done;
    expect(out).toContain('reply 2 fds 0');
    expect(code).toBe(0);

    pccl.agentServerClose(); // the name goes with the listener: a new server gets it at once
    pccl.agentListen(name, () => {});
    pccl.agentServerClose();
    expect(() => pccl.agentListen('@', () => {})).toThrow(expect.objectContaining({ code: 'BAD_ARGS' }));
  });

  it('closes every connection and removes the socket file on agentServerClose', async () => {
    const sock = join(dir, 'server.sock');
    const q = new EventQueue();
    pccl.agentListen(sock, q.push);
    expect(() => pccl.agentListen(join(dir, 'second.sock'), () => {})).toThrow(expect.objectContaining({ code: 'ILLEGAL_STATE' }));
    const { done } = run(client, [sock, helloFile(), String(STAGING)]);
    const pkt = await q.next('packet');
    for (const fd of pkt.fds) pccl.closeFd(fd);

    pccl.agentServerClose();
    expect(existsSync(sock)).toBe(false);
    const closed = await q.next('closed', (e) => e.conn === pkt.conn);
    expect(closed.reason).toBe('agent socket server closed');
    expect((await done).out).toContain('reply 0 fds 0');
    pccl.agentServerClose(); // idempotent
  });
});
