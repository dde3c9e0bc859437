// The one request/response protocol between dotfind's page API, its worker and the worker's
// scoring helpers, over postMessage: a request is {id, type, args}; the answer is
// {id, ok: true, result} or {id, ok: false, error} (a DotfindError's fields); while a request
// runs, the worker may also post {id, type: 'progress', ...}.
import { DotfindError } from './errors.js';

/** The asking side: one Promise per request, settled by the matching answer. */
export class WorkerClient {
  #worker;
  #next = 1;
  #pending = new Map();

  /**
   * `failure(event)` returns the error every waiting call gets when the worker fails (it may
   * also call `event.preventDefault()` to keep the failure from being reported again).
   */
  constructor(worker, failure) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const pending = this.#pending.get(data.id);
      if (!pending) return;
      if (data.type === 'progress') {
        pending.onProgress?.(data);
        return;
      }
      this.#pending.delete(data.id);
      if (data.ok) pending.resolve(data.result);
      else pending.reject(DotfindError.from(data.error));
    };
    worker.onerror = (event) => {
      this.#worker.terminate(); // failed once, never answers again (see serve)
      this.#fail(failure(event));
    };
  }

  /** The error the worker failed with, once it failed (calls then reject with it at once). */
  failure = null;

  /** Sends a request; `onProgress` receives the worker's progress messages for it. */
  call(type, args, onProgress) {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, type, args });
    });
  }

  /** Stops the worker; calls still waiting reject with `error`. */
  terminate(error) {
    this.#worker.terminate();
    this.#fail(error);
  }

  #fail(error) {
    this.failure ??= error;
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
  }
}

/**
 * The answering side, in a worker: each request runs `handlers[type](args, id)` and its
 * result (or the message of what it threw) goes back. `transfer(result)` lists buffers to
 * move rather than copy.
 */
export function serve(name, handlers, transfer = () => []) {
  self.onmessage = async ({ data }) => {
    const { id, type, args } = data;
    try {
      const handler = handlers[type];
      if (!handler) throw new DotfindError(`${name}: unknown request ${type}`);
      const result = await handler(args, id);
      self.postMessage({ id, ok: true, result }, transfer(result));
    } catch (e) {
      self.postMessage({ id, ok: false, error: DotfindError.from(e).toJSON() });
      // A wasm trap (a Rust panic) may leave the instance's state half-changed: this worker
      // must not answer again. Thrown outside the handler, it fails the worker, which the
      // page's WorkerClient reports, and the page starts a fresh one.
      if (e instanceof WebAssembly.RuntimeError) {
        self.onmessage = null;
        setTimeout(() => {
          throw e;
        });
      }
    }
  };
}
