/**
 * Runs `work` with a signal that aborts after `ms`, or when `parent` aborts, and settles by then even when `work`
 * ignores its signal (the managed identity credential does not pass it on to its token request). The rejection is
 * `onAbort(timedOut)`. A plain timer, cleared as soon as the work settles: `AbortSignal.timeout` would keep a timer
 * and a signal alive for the whole deadline after every read, which in a registration storm is most of the heap.
 */
export function withDeadline<T>(
  ms: number,
  parent: AbortSignal | undefined,
  onAbort: (timedOut: boolean) => Error,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    };
    const stop = (timedOut: boolean) => {
      cleanup();
      controller.abort();
      reject(onAbort(timedOut));
    };
    const onParentAbort = () => stop(false);
    const timer = setTimeout(() => stop(true), Math.max(0, ms));
    if (parent?.aborted) return stop(false);
    parent?.addEventListener('abort', onParentAbort, { once: true });
    let running: Promise<T>;
    try {
      running = work(controller.signal);
    } catch (error) {
      cleanup();
      return reject(error);
    }
    running.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (error: unknown) => {
        cleanup();
        reject(error);
      },
    );
  });
}
