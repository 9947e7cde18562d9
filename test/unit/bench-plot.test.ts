// bench/plot.ts: the PNG it writes is well-formed (signature, IHDR, chunk CRCs, an IDAT that inflates to
// one filter byte plus width*3 bytes per row), and each series with points shows up in its own colour at
// its data points while a series without points is left out entirely.
import { describe, expect, it } from 'vitest';
import { crc32 as zlibCrc32, inflateSync } from 'node:zlib';
import { crc32, layout, logTicks, renderChart, type Chart, type RGB } from '../../bench/plot.ts';

const BLUE: RGB = [31, 119, 180];
const RED: RGB = [214, 39, 40];
const GREEN: RGB = [44, 160, 44];
const ORANGE: RGB = [255, 127, 14];

const fixture: Chart = {
  title: 'Stall vs size', subtitle: 'fixture', xTitle: 'GiB', yTitle: 'seconds', width: 640, height: 420,
  series: [
    { label: 'a stall', color: BLUE, marker: 'circle', points: [{ x: 1, y: 0.8 }, { x: 4, y: 0.9 }] },
    { label: 'b stall', color: RED, marker: 'square', points: [{ x: 1, y: 5 }, { x: 4, y: 30 }] },
    { label: 'a restore', color: GREEN, marker: 'triangle', dashed: true, points: [{ x: 2, y: 2 }] },
    { label: 'b restore (no data)', color: ORANGE, marker: 'diamond', points: [] },
  ],
};

/** Splits a PNG into its chunks, checking each chunk's CRC against zlib's own CRC-32. */
function chunks(png: Buffer): { type: string; data: Buffer }[] {
  const out: { type: string; data: Buffer }[] = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    const typeAndData = png.subarray(at + 4, at + 8 + len);
    expect(png.readUInt32BE(at + 8 + len)).toBe(zlibCrc32(typeAndData));
    out.push({ type: typeAndData.subarray(0, 4).toString('latin1'), data: typeAndData.subarray(4) });
    at += 12 + len;
  }
  return out;
}

/** Decodes the (filter-0) scanlines into a pixel lookup. */
function pixels(png: Buffer): { w: number; h: number; raw: Buffer; at: (x: number, y: number) => RGB } {
  const all = chunks(png);
  const ihdr = all.find((c) => c.type === 'IHDR')?.data ?? Buffer.alloc(13);
  const [w, h] = [ihdr.readUInt32BE(0), ihdr.readUInt32BE(4)];
  const raw = inflateSync(Buffer.concat(all.filter((c) => c.type === 'IDAT').map((c) => c.data)));
  const at = (x: number, y: number): RGB => {
    const i = y * (w * 3 + 1) + 1 + x * 3;
    return [raw[i] ?? -1, raw[i + 1] ?? -1, raw[i + 2] ?? -1];
  };
  return { w, h, raw, at };
}

function count(p: ReturnType<typeof pixels>, col: RGB): number {
  let n = 0;
  for (let y = 0; y < p.h; y++) for (let x = 0; x < p.w; x++) if (p.at(x, y).every((v, i) => v === col[i])) n++;
  return n;
}

describe('bench/plot', () => {
  const png = renderChart(fixture);

  it('writes a PNG: signature, IHDR 8-bit RGB of the asked size, chunks in order, IEND last', () => {
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const all = chunks(png);
    expect(all.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const ihdr = all[0]?.data ?? Buffer.alloc(0);
    expect([ihdr.readUInt32BE(0), ihdr.readUInt32BE(4)]).toEqual([640, 420]);
    expect([...ihdr.subarray(8)]).toEqual([8, 2, 0, 0, 0]);
  });

  it('IDAT inflates to height scanlines of one filter byte plus width*3 bytes', () => {
    const p = pixels(png);
    expect(p.raw.length).toBe(p.w * p.h * 3 + p.h);
    for (let y = 0; y < p.h; y++) expect(p.raw[y * (p.w * 3 + 1)]).toBe(0);
  });

  it('draws each series with points in its colour at its data points, and leaves out the empty one', () => {
    const p = pixels(png);
    const L = layout(fixture);
    for (const s of fixture.series.filter((x) => x.points.length > 0)) {
      expect(count(p, s.color)).toBeGreaterThan(50);
      for (const pt of s.points) expect(p.at(L.px(pt.x), L.py(pt.y))).toEqual(s.color);
    }
    expect(count(p, ORANGE)).toBe(0);
  });

  it('puts larger values higher and larger sizes further right, inside the plot rectangle', () => {
    const L = layout(fixture);
    expect(L.py(30)).toBeLessThan(L.py(5));
    expect(L.px(4)).toBeGreaterThan(L.px(1));
    for (const s of fixture.series) {
      for (const pt of s.points) {
        expect(L.px(pt.x)).toBeGreaterThan(L.plot.left);
        expect(L.px(pt.x)).toBeLessThan(L.plot.right);
        expect(L.py(pt.y)).toBeGreaterThanOrEqual(L.plot.top);
        expect(L.py(pt.y)).toBeLessThanOrEqual(L.plot.bottom);
      }
    }
  });

  it('log ticks run 1-2-5 from at or below the smallest value to at or above the largest', () => {
    expect(logTicks(0.896, 36.6)).toEqual([0.5, 1, 2, 5, 10, 20, 50]);
    expect(logTicks(1, 10)).toEqual([1, 2, 5, 10]);
  });

  it('crc32 matches zlib and refuses charts it cannot draw on log axes', () => {
    const b = Buffer.from('IEND');
    expect(crc32(b)).toBe(zlibCrc32(b));
    expect(() => renderChart({ ...fixture, series: [] })).toThrow(/no data points/);
    expect(() => renderChart({ ...fixture, series: [{ label: 'z', color: RED, marker: 'circle', points: [{ x: 1, y: 0 }] }] })).toThrow(RangeError);
  });
});
