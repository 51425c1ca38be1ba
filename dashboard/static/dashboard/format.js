// How the pages show numbers and times (the same rules as dashboard/formatting.py).
// Money and quantities arrive from the API as decimal strings (never floats): they are rounded here as strings,
// half-up, to the precision the page passes (the instrument's price / lot / quote-currency precision), so a page
// never shows a raw 18-digit decimal nor a float artefact. Times: to the second, in UTC, the zone named.

export const DASH = "–";

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** "2026-12-07 18:20:15 UTC" from an ISO string, a Date or epoch milliseconds; a dash for nothing. */
export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return DASH;
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return DASH;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** A decimal string (or number) rounded half-up to `places` as a string, without grouping; null when not a number. */
export function roundDecimal(value, places) {
  if (value === null || value === undefined || value === "") return null;
  let s = String(value).trim();
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null;
    s = value.toFixed(Math.min(20, places + 2));
  }
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) return null;
  const negative = m[1] === "-";
  let intPart = m[2] || "0";
  let frac = m[3] || "";
  const exp = m[4] ? parseInt(m[4], 10) : 0;
  if (exp !== 0) { // shift the decimal point
    let digits = intPart + frac;
    let point = intPart.length + exp;
    if (point < 0) { digits = "0".repeat(-point) + digits; point = 0; }
    if (point > digits.length) digits = digits + "0".repeat(point - digits.length);
    intPart = digits.slice(0, point) || "0";
    frac = digits.slice(point);
  }
  const scaled = BigInt(intPart + (frac + "0".repeat(places + 1)).slice(0, places + 1));
  let rounded = (scaled + 5n) / 10n; // half-up on the magnitude
  let text = rounded.toString().padStart(places + 1, "0");
  const whole = places > 0 ? text.slice(0, -places) : text;
  const decimals = places > 0 ? text.slice(-places) : "";
  const sign = negative && rounded !== 0n ? "-" : "";
  return places > 0 ? `${sign}${whole}.${decimals}` : `${sign}${whole}`;
}

function group(text) {
  const [whole, decimals] = text.split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  const digits = sign ? whole.slice(1) : whole;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return decimals === undefined ? sign + grouped : `${sign}${grouped}.${decimals}`;
}

/** Money to `places` (the quote currency's precision), grouped: "12,345.68"; with `currency`, "12,345.68 USD". */
export function fmtMoney(value, places = 2, currency = "") {
  const r = roundDecimal(value, places);
  if (r === null) return DASH;
  return currency ? `${group(r)} ${currency}` : group(r);
}

/** Money with an explicit sign: "+12.30", "-4.00". */
export function fmtSigned(value, places = 2) {
  const r = roundDecimal(value, places);
  if (r === null) return DASH;
  return r.startsWith("-") || /^0(\.0*)?$/.test(r) ? group(r) : `+${group(r)}`;
}

/** A price or a quantity to the instrument's precision, ungrouped (as the exchange writes it). */
export function fmtDecimal(value, places) {
  const r = roundDecimal(value, places);
  return r === null ? DASH : r;
}

/** A fraction as a percentage: 0.1534 -> "15.34 %". */
export function fmtPct(fraction, places = 2) {
  if (fraction === null || fraction === undefined || fraction === "") return DASH;
  const n = Number(fraction) * 100;
  return Number.isFinite(n) ? `${n.toFixed(places)} %` : DASH;
}

/** Escape text for innerHTML templates. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

/** Seconds since the epoch (what the charts take) from an ISO string. */
export const epochSeconds = (iso) => Math.floor(new Date(iso).getTime() / 1000);
