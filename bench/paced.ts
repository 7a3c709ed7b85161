import { Agent, request } from 'node:http';
import { Samples } from './lib.js';

/**
 * An open-loop load: requests leave on a fixed schedule (`rate` per second, spread evenly in 1 ms steps) whether or
 * not earlier ones have been answered, over keep-alive connections, and each latency is counted from the moment the
 * request was DUE, so a stall shows up in full (no coordinated omission). autocannon's `overallRate` instead gives
 * every connection its quota at the start of each second, which arrives as a burst at full speed; this run shows
 * the latency of the same rate arriving evenly, as independent devices do.
 */
export async function pacedLoad(url: string, bodies: readonly string[], rate: number, seconds: number, maxSockets = 64) {
  const agent = new Agent({ keepAlive: true, maxSockets });
  const { hostname, port, pathname } = new URL(url);
  const latencies = new Samples();
  // From the moment the request actually left: the part of the latency that is not the generator's own lag.
  const fromSend = new Samples();
  let sent = 0;
  let answered = 0;
  let non2xx = 0;
  let errors = 0;
  const total = Math.round(rate * seconds);
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const send = (due: number) => {
      const body = bodies[sent % bodies.length]!;
      sent += 1;
      const left = performance.now();
      const req = request(
        { agent, hostname, port, path: pathname, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.once('end', () => {
            if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) {
              const at = performance.now();
              latencies.push(at - due);
              fromSend.push(at - left);
            } else non2xx += 1;
            if (++answered === total) resolve();
          });
        },
      );
      req.once('error', () => {
        errors += 1;
        if (++answered === total) resolve();
      });
      req.end(body);
    };
    const timer = setInterval(() => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - started) / 1000) * rate));
      while (sent < due) send(started + (sent * 1000) / rate);
      if (sent >= total) clearInterval(timer);
    }, 1);
    // Bounded: whatever is still unanswered 10 s after the last send counts as an error.
    setTimeout(() => {
      clearInterval(timer);
      errors += total - answered;
      resolve();
    }, (seconds + 10) * 1000).unref();
  });
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return { latencies, fromSend, sent, non2xx, errors, seconds: elapsed };
}
