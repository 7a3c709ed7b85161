/**
 * Progress for a person: a bar redrawn in place on a terminal, or one plain line every few seconds when the output
 * is a log (CI). Both show done of total, rate, time left and failures so far; neither shows any key.
 */

export interface ProgressSnapshot {
  /** Rows decided so far (written, unchanged, conflict, failed). */
  readonly done: number;
  readonly total: number;
  readonly written: number;
  readonly failed: number;
  /** Milliseconds since writing started. */
  readonly elapsedMs: number;
}

export interface ProgressSink {
  update(snapshot: ProgressSnapshot): void;
  finish(snapshot: ProgressSnapshot): void;
}

export const silentProgress: ProgressSink = { update: () => undefined, finish: () => undefined };

function duration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function describe(s: ProgressSnapshot): { rate: string; left: string; percent: string } {
  const perSecond = s.elapsedMs > 0 ? (s.written * 1000) / s.elapsedMs : 0;
  const remaining = s.total - s.done;
  const left = remaining === 0 ? 0 : perSecond > 0 ? (remaining / perSecond) * 1000 : Infinity;
  return {
    rate: `${perSecond.toFixed(1)} writes/s`,
    left: duration(left),
    percent: `${s.total === 0 ? 100 : Math.floor((s.done * 100) / s.total)}%`,
  };
}

/** A bar on one terminal line, redrawn at most every `everyMs`. */
export function ttyProgress(write: (text: string) => void, columns = 80, everyMs = 100, now: () => number = Date.now): ProgressSink {
  let last = -Infinity;
  const draw = (s: ProgressSnapshot, final: boolean) => {
    const d = describe(s);
    const tail = ` ${s.done}/${s.total} ${d.percent} ${d.rate} ETA ${d.left} failed ${s.failed}`;
    const width = Math.max(10, Math.min(40, columns - tail.length - 3));
    const filled = s.total === 0 ? width : Math.floor((s.done * width) / s.total);
    write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]${tail}\x1b[K${final ? '\n' : ''}`);
  };
  return {
    update(s) {
      const t = now();
      if (t - last < everyMs) return;
      last = t;
      draw(s, false);
    },
    finish: (s) => draw(s, true),
  };
}

/** One plain line every `everyMs` (default 5 s), for logs. */
export function plainProgress(write: (text: string) => void, everyMs = 5_000, now: () => number = Date.now): ProgressSink {
  let last = now();
  const line = (s: ProgressSnapshot) => {
    const d = describe(s);
    write(`progress: ${s.done}/${s.total} rows (${d.percent}), ${s.written} written, ${d.rate}, ${d.left} left, ${s.failed} failed\n`);
  };
  return {
    update(s) {
      const t = now();
      if (t - last < everyMs) return;
      last = t;
      line(s);
    },
    finish: line,
  };
}
