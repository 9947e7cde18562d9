// A small dependency-free line-chart renderer for BENCHMARKS.md: series of (x, y) points on a log2 x axis
// and a log10 y axis, drawn into an RGB buffer with a built-in 5x7 bitmap font and written as a PNG
// (8-bit RGB, one zlib-deflated IDAT, CRC32 per chunk). Only what the caller passes is drawn.
import { deflateSync } from 'node:zlib';

export type RGB = readonly [number, number, number];
export type Marker = 'circle' | 'square' | 'triangle' | 'diamond';
export interface Point { x: number; y: number }
/** One line; `size` is the marker radius in px (default 6): a larger marker stays visible under a smaller one. */
export interface Series { label: string; color: RGB; marker: Marker; size?: number; dashed?: boolean; points: Point[] }
export interface Chart { title: string; subtitle?: string; xTitle: string; yTitle: string; series: Series[]; width?: number; height?: number }

interface Canvas { w: number; h: number; px: Uint8Array }
interface Rect { left: number; top: number; right: number; bottom: number }
/** Where things go: the plot rectangle, the axis ranges and ticks, and the data-to-pixel maps. */
export interface Layout { w: number; h: number; plot: Rect; xTicks: number[]; yTicks: number[]; legendTop: number; legendCols: number; px: (x: number) => number; py: (y: number) => number }

const WHITE: RGB = [255, 255, 255];
const INK: RGB = [40, 40, 40];
const GRID: RGB = [225, 225, 225];
const S = 2; // font scale for labels: glyphs 10x14 px (+2 px descender), 12 px advance
const T = 3; // font scale for the title

// 5x7 font (row 7 holds descenders), '|'-separated: the character, then one base-32 digit per row from the
// top, bit 4 = leftmost column; missing trailing rows are blank. Unknown characters draw as '?'.
const FONT_SRC =
  '0ehjlphe|14c4444e|2eh1248v|3v2421he|426aiv22|5vgu11he|668guhhe|7v124888|8ehhehhe|9ehhf12c|Aehhvhhh|' +
  'Buhhuhhu|Cehggghe|Dsihhhis|Evgguggv|Fvgguggg|Gehgnhhf|Hhhhvhhh|Ie44444e|J72222ic|Khikokih|Lggggggv|' +
  'Mhrllhhh|Nhhpljhh|Oehhhhhe|Puhhuggg|Qehhhlid|Ruhhukih|Sfgge11u|Tv444444|Uhhhhhhe|Vhhhhha4|Whhhllla|' +
  'Xhha4ahh|Yhha4444|Zv1248gv|a00e1fhf|bggmphhu|c00egghe|d11djhhf|e00ehvge|f698s888|g00fhhf1e|hggmphhh|' +
  'i40c444e|j206222ic|kggikoki|lc44444e|m00qllhh|n00mphhh|o00ehhhe|p00uhhugg|q00fhhf11|r00mpggg|' +
  's00ege1u|t88s8896|u00hhhjd|v00hhha4|w00hhlla|x00ha4ah|y00hhhf1e|z00v248v| |.00000cc|,0000cc48|' +
  '/01248g|%op248j3|(2488842|)8422248|-000e|+044v44|:0cc0cc|=00v0v|?eh12404';
const FONT = new Map(FONT_SRC.split('|').map((g) => [g[0] ?? ' ', [...g.slice(1)].map((d) => parseInt(d, 32))]));

// ---- PNG encoding ----

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (ISO 3309, as PNG uses it) of a byte buffer. */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data, CRC over type + data. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Encodes width*height RGB pixels (row-major, 3 bytes each) as a PNG; every scanline uses filter 0. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const stride = width * 3;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

// ---- drawing primitives ----

function canvas(w: number, h: number): Canvas {
  return { w, h, px: new Uint8Array(w * h * 3).fill(255) };
}

function dot(c: Canvas, x: number, y: number, col: RGB): void {
  x = Math.round(x);
  y = Math.round(y);
  if (x < 0 || y < 0 || x >= c.w || y >= c.h) return;
  c.px.set(col, (y * c.w + x) * 3);
}

function fillRect(c: Canvas, x: number, y: number, w: number, h: number, col: RGB): void {
  for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) dot(c, x + i, y + j, col);
}

/** A line `width` px thick, stamped along its length; dashed lines draw 10 px on, 6 px off. */
function line(c: Canvas, x0: number, y0: number, x1: number, y1: number, col: RGB, width = 1, dashed = false): void {
  const len = Math.hypot(x1 - x0, y1 - y0);
  const r = (width - 1) / 2;
  for (let d = 0; d <= len; d += 0.5) {
    if (dashed && d % 16 >= 10) continue;
    const t = len === 0 ? 0 : d / len;
    const x = x0 + (x1 - x0) * t;
    const y = y0 + (y1 - y0) * t;
    for (let j = -Math.ceil(r); j <= Math.ceil(r); j++) {
      for (let i = -Math.ceil(r); i <= Math.ceil(r); i++) if (i * i + j * j <= r * r + 0.5) dot(c, x + i, y + j, col);
    }
  }
}

/** Whether offset (dx, dy) from a marker's centre lies inside a marker of radius r. */
function inMarker(m: Marker, dx: number, dy: number, r: number): boolean {
  if (m === 'circle') return dx * dx + dy * dy <= r * r + r;
  if (m === 'square') return Math.abs(dx) <= r - 1 && Math.abs(dy) <= r - 1;
  if (m === 'diamond') return Math.abs(dx) + Math.abs(dy) <= r + 1;
  return dy >= -r && dy <= r - 1 && Math.abs(dx) * 2 <= dy + r + 1; // triangle, apex up
}

/** A filled marker with a white halo so that markers sitting on each other stay apart. */
function marker(c: Canvas, cx: number, cy: number, m: Marker, col: RGB, r = 6): void {
  for (const [rad, fill] of [[r + 2, WHITE], [r, col]] as const) {
    for (let dy = -rad - 1; dy <= rad + 1; dy++) {
      for (let dx = -rad - 1; dx <= rad + 1; dx++) if (inMarker(m, dx, dy, rad)) dot(c, cx + dx, cy + dy, fill);
    }
  }
}

/** Text width in px at a font scale (6-column advance, no trailing gap). */
export function textWidth(s: string, scale = S): number {
  return s.length === 0 ? 0 : s.length * 6 * scale - scale;
}

/** Draws text with its top-left at (x, y); `up` turns it 90° to read bottom-to-top with (x, y) the bottom-left. */
function text(c: Canvas, x: number, y: number, s: string, col: RGB, scale = S, up = false): void {
  [...s].forEach((ch, k) => {
    const rows = FONT.get(ch) ?? FONT.get('?') ?? [];
    rows.forEach((bits, row) => {
      for (let col5 = 0; col5 < 5; col5++) {
        if (!((bits >> (4 - col5)) & 1)) continue;
        const along = k * 6 * scale + col5 * scale;
        if (up) fillRect(c, x + row * scale, y - along - scale, scale, scale, col);
        else fillRect(c, x + along, y + row * scale, scale, scale, col);
      }
    });
  });
}

// ---- axes and layout ----

/** 1-2-5 ticks per decade covering [lo, hi]: the first at or below lo, the last at or above hi. */
export function logTicks(lo: number, hi: number): number[] {
  const all: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) all.push(Number((m * 10 ** e).toPrecision(3)));
  }
  const first = all.filter((t) => t <= lo).pop() ?? lo;
  const last = all.find((t) => t >= hi) ?? hi;
  return all.filter((t) => t >= first && t <= last);
}

/** Powers of two from the one at or below lo to the one at or above hi. */
function pow2Ticks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log2(lo)); e <= Math.ceil(Math.log2(hi)); e++) out.push(2 ** e);
  return out;
}

const fmt = (v: number) => String(Number(v.toPrecision(3)));

/** Computes the plot rectangle, ticks, legend placement and the data-to-pixel maps for a chart. */
export function layout(chart: Chart): Layout {
  const w = chart.width ?? 960;
  const h = chart.height ?? 600;
  const drawn = chart.series.filter((s) => s.points.length > 0);
  const pts = drawn.flatMap((s) => s.points);
  if (pts.length === 0) throw new Error('plot: no data points to draw');
  if (pts.some((p) => !(p.x > 0 && p.y > 0 && Number.isFinite(p.x) && Number.isFinite(p.y)))) throw new RangeError('plot: log axes need positive finite values');
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const xTicks = pow2Ticks(Math.min(...xs), Math.max(...xs));
  const yTicks = logTicks(Math.min(...ys), Math.max(...ys));
  const left = 40 + Math.max(...yTicks.map((t) => textWidth(fmt(t)))) + 12;
  const plotW = w - left - 40;
  const legendCols = Math.max(...drawn.map((s) => 56 + textWidth(s.label))) <= plotW / 2 ? 2 : 1;
  const legendRows = Math.ceil(drawn.length / legendCols);
  const top = chart.subtitle ? 90 : 64;
  const bottom = h - 104 - legendRows * 26;
  const plot = { left, top, right: left + plotW, bottom };
  const [x0, x1] = [Math.log2(xTicks[0] ?? 1), Math.log2(xTicks[xTicks.length - 1] ?? 2)];
  const [y0, y1] = [Math.log10(yTicks[0] ?? 1), Math.log10(yTicks[yTicks.length - 1] ?? 10)];
  const pad = 16; // keeps markers off the frame on the x axis
  const px = (x: number) => Math.round(left + pad + ((Math.log2(x) - x0) / (x1 - x0 || 1)) * (plotW - 2 * pad));
  const py = (y: number) => Math.round(bottom - ((Math.log10(y) - y0) / (y1 - y0 || 1)) * (bottom - top));
  return { w, h, plot, xTicks, yTicks, legendTop: bottom + 84, legendCols, px, py };
}

/** Grid lines, the frame, tick labels and both axis titles. */
function drawAxes(c: Canvas, L: Layout, chart: Chart): void {
  const { left, top, right, bottom } = L.plot;
  for (const t of L.yTicks) {
    line(c, left, L.py(t), right, L.py(t), GRID);
    text(c, left - 10 - textWidth(fmt(t)), L.py(t) - 7, fmt(t), INK);
  }
  for (const t of L.xTicks) {
    line(c, L.px(t), top, L.px(t), bottom, GRID);
    line(c, L.px(t), bottom, L.px(t), bottom + 5, INK);
    text(c, L.px(t) - Math.floor(textWidth(fmt(t)) / 2), bottom + 12, fmt(t), INK);
  }
  for (const [a, b, d, e] of [[left, top, right, top], [left, bottom, right, bottom], [left, top, left, bottom], [right, top, right, bottom]] as const) line(c, a, b, d, e, INK);
  text(c, Math.round((left + right - textWidth(chart.xTitle)) / 2), bottom + 44, chart.xTitle, INK);
  text(c, 14, Math.round((top + bottom + textWidth(chart.yTitle)) / 2), chart.yTitle, INK, S, true);
}

/** Each series: its line through the points in x order, then its markers on top. */
function drawSeries(c: Canvas, L: Layout, series: Series[]): void {
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    for (let i = 1; i < pts.length; i++) {
      const [a, b] = [pts[i - 1], pts[i]];
      if (a && b) line(c, L.px(a.x), L.py(a.y), L.px(b.x), L.py(b.y), s.color, 3, s.dashed);
    }
  }
  for (const s of series) for (const p of s.points) marker(c, L.px(p.x), L.py(p.y), s.marker, s.color, s.size);
}

/** Legend under the x-axis title: a line sample with the series' marker, then its label. */
function drawLegend(c: Canvas, L: Layout, series: Series[]): void {
  const colW = (L.plot.right - L.plot.left) / L.legendCols;
  series.forEach((s, i) => {
    const x = Math.round(L.plot.left + (i % L.legendCols) * colW);
    const y = L.legendTop + Math.floor(i / L.legendCols) * 26;
    line(c, x, y + 7, x + 40, y + 7, s.color, 3, s.dashed);
    marker(c, x + 20, y + 7, s.marker, s.color, s.size);
    text(c, x + 52, y, s.label, INK);
  });
}

/** Renders the chart to PNG bytes. Series without points are left out, legend included. */
export function renderChart(chart: Chart): Buffer {
  const L = layout(chart);
  const c = canvas(L.w, L.h);
  const series = chart.series.filter((s) => s.points.length > 0);
  text(c, Math.round((L.w - textWidth(chart.title, T)) / 2), 18, chart.title, INK, T);
  if (chart.subtitle) text(c, Math.round((L.w - textWidth(chart.subtitle)) / 2), 56, chart.subtitle, INK);
  drawAxes(c, L, chart);
  drawSeries(c, L, series);
  drawLegend(c, L, series);
  return encodePng(c.w, c.h, c.px);
}
