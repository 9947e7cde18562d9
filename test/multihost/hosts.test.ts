import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { hostsUnavailable, makeHosts, type Hosts } from '../helpers/hosts.ts';

const nsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

describe('test harness: makeHosts', () => {
  let made: Hosts | undefined;
  afterEach(() => { made?.destroy(); made = undefined; });

  it('joins two hosts so TCP bytes flow between their addresses, and tears down', async (ctx) => {
    const why = hostsUnavailable();
    if (why) return ctx.skip(why);
    made = makeHosts(2);
    const [a, b] = made.hosts as [NonNullable<Hosts['hosts'][0]>, NonNullable<Hosts['hosts'][0]>];
    expect(a.addr).not.toBe(b.addr);
    // A one-shot TCP server on b; a sends 1 MiB of known bytes; b reports the count and sha256 it got.
    const server = `const s=require('net').createServer(c=>{const h=require('crypto').createHash('sha256');let n=0;c.on('data',d=>{n+=d.length;h.update(d)});c.on('end',()=>{console.log(n+' '+h.digest('hex'));s.close()})});s.listen(7777,'${b.addr}',()=>console.log('up'))`;
    const client = `const d=Buffer.alloc(1<<20);for(let i=0;i<d.length;i++)d[i]=i*31&255;const c=require('net').connect(7777,'${b.addr}',()=>c.end(d))`;
    const srv = made.spawn(b, process.execPath, ['-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    const received = await new Promise<string | undefined>((resolve) => {
      srv.stdout!.on('data', (d: Buffer) => {
        lines.push(...d.toString().split('\n').filter(Boolean));
        if (lines.at(-1) === 'up') made!.exec(a, process.execPath, ['-e', client]);
      });
      srv.on('exit', () => resolve(lines.find((l) => l !== 'up')));
    });
    const expected = Buffer.alloc(1 << 20).map((_, i) => (i * 31) & 255);
    expect(received).toBe(`${1 << 20} ${createHash('sha256').update(expected).digest('hex')}`);
    const names = made.hosts.map((h) => h.ns);
    made.destroy();
    const after = nsList();
    for (const n of names) expect(after).not.toContain(n);
  });

  it('keeps hosts off the machine network: a host has only its test-subnet route', (ctx) => {
    const why = hostsUnavailable();
    if (why) return ctx.skip(why);
    made = makeHosts(1);
    const routes = made.exec(made.hosts[0]!, 'ip', ['-4', 'route']);
    expect(routes.trim().split('\n')).toHaveLength(1); // only the test subnet, no default route
  });
});
