// Small chart helpers of the lifecycle pages: uPlot time series with several series on their own time stamps
// (merged onto one x axis, gaps spanned), and an SVG reliability diagram. uPlot is the vendored global.

import { fmtTime } from "../format.js";

export const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#a5d6ff"];

/** Series [{label, t: [epoch s], y: [..]}] onto one sorted x axis with nulls where a series has no point. */
export function mergeSeries(series) {
  const xs = [...new Set(series.flatMap((s) => s.t))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const s of series) {
    const ys = new Array(xs.length).fill(null);
    s.t.forEach((t, i) => { ys[index.get(t)] = s.y[i]; });
    data.push(ys);
  }
  return data;
}

/** Draw (or redraw) a time-series chart into `el`; `series` as mergeSeries takes, `format` for the y values. */
const pad2 = (n) => String(n).padStart(2, "0");

/** An axis tick in UTC: "12-07 18:20" (the hover legend says the full time to the second). */
function utcTick(seconds) {
  const d = new Date(seconds * 1000);
  return `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
}

export function lineChart(el, series, { format = (v) => String(v), zeroLine = true, height = 240, yRange = null } = {}) {
  if (el._plot) { el._plot.destroy(); el._plot = null; }
  el.innerHTML = "";
  if (!series.length || !series.some((s) => s.t.length)) return null;
  const width = Math.max(320, el.clientWidth || 600);
  const data = mergeSeries(series);
  const xs = data[0];
  // one instant only: an hour either side, so the point sits in a readable window instead of a span of years
  const xRange = xs.length && xs[0] === xs[xs.length - 1] ? [xs[0] - 3600, xs[0] + 3600] : null;
  const opts = {
    width, height,
    scales: {
      x: xRange ? { time: true, auto: false, range: xRange } : { time: true },
      ...(yRange ? { y: { range: () => yRange } } : {}),
    },
    axes: [
      { stroke: "#8a96a3", grid: { stroke: "#2a3440" }, size: 40, space: 90, values: (u, ticks) => ticks.map(utcTick) },
      { stroke: "#8a96a3", grid: { stroke: "#2a3440" }, size: 70, values: (u, vals) => vals.map(format) },
    ],
    series: [
      { value: (u, v) => (v == null ? "–" : fmtTime(v * 1000)) },
      ...series.map((s, i) => ({
        label: s.label, stroke: s.color || PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
        points: { show: s.t.length < 60 },
        value: (u, v) => (v == null ? "–" : format(v)),
      })),
    ],
    hooks: zeroLine ? { draw: [(u) => {
      const y = u.valToPos(0, "y", true);
      if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
      u.ctx.save(); u.ctx.strokeStyle = "#8a96a3"; u.ctx.setLineDash([4, 4]);
      u.ctx.beginPath(); u.ctx.moveTo(u.bbox.left, y); u.ctx.lineTo(u.bbox.left + u.bbox.width, y); u.ctx.stroke();
      u.ctx.restore();
    }] } : {},
  };
  el._plot = new window.uPlot(opts, data, el);
  return el._plot;
}

const SVG = "http://www.w3.org/2000/svg";
const node = (name, attrs, text) => {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

/**
 * A reliability diagram: per bucket, the mean confidence (x) against the observed frequency (y), a dot sized by
 * the bucket's count, the diagonal of perfect calibration. `curves`: [{label, buckets, color}].
 */
export function reliabilityDiagram(el, curves, { size = 260 } = {}) {
  el.innerHTML = "";
  const pad = 34;
  const inner = size - 2 * pad;
  const svg = node("svg", { viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: "img",
    "aria-label": "reliability diagram" });
  const px = (v) => pad + v * inner;
  const py = (v) => size - pad - v * inner;
  svg.append(node("rect", { x: pad, y: pad, width: inner, height: inner, fill: "none", stroke: "#2a3440" }));
  svg.append(node("line", { x1: px(0), y1: py(0), x2: px(1), y2: py(1), stroke: "#8a96a3", "stroke-dasharray": "4 4" }));
  for (const t of [0, 0.5, 1]) {
    svg.append(node("text", { x: px(t), y: size - pad + 14, fill: "#8a96a3", "font-size": 10, "text-anchor": "middle" }, t));
    svg.append(node("text", { x: pad - 6, y: py(t) + 3, fill: "#8a96a3", "font-size": 10, "text-anchor": "end" }, t));
  }
  svg.append(node("text", { x: size / 2, y: size - 4, fill: "#8a96a3", "font-size": 10, "text-anchor": "middle" }, "confidence"));
  svg.append(node("text", { x: 10, y: size / 2, fill: "#8a96a3", "font-size": 10, "text-anchor": "middle",
    transform: `rotate(-90 10 ${size / 2})` }, "observed"));
  curves.forEach((curve, i) => {
    const color = curve.color || PALETTE[i % PALETTE.length];
    const points = curve.buckets.filter((b) => b.count > 0 && b.mean_predicted != null && b.observed_frequency != null);
    const total = points.reduce((a, b) => a + b.count, 0) || 1;
    if (points.length > 1) {
      svg.append(node("polyline", { fill: "none", stroke: color, "stroke-width": 1.5,
        points: points.map((b) => `${px(b.mean_predicted)},${py(b.observed_frequency)}`).join(" ") }));
    }
    for (const b of points) {
      const dot = node("circle", { cx: px(b.mean_predicted), cy: py(b.observed_frequency),
        r: 2 + 6 * Math.sqrt(b.count / total), fill: color });
      dot.append(node("title", {}, `${curve.label}: confidence ${b.mean_predicted.toFixed(3)}, ` +
        `right ${(b.observed_frequency * 100).toFixed(1)} % of ${b.count}`));
      svg.append(dot);
    }
  });
  el.append(svg);
  return svg;
}
