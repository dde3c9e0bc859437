// The one error shape of dotfind: every promise the package returns rejects with a
// DotfindError, whose message names the file, URL or input at fault. Errors raised in the
// wasm core (their messages start with the file name) and in JS (`dotfind: …`) alike, and
// across workers: the shape survives postMessage through toJSON / DotfindError.from.

export class DotfindError extends Error {
  /**
   * @param {string} message
   * @param {{file?: string, status?: number, cause?: unknown}} [details] `file`: the file or
   *   URL at fault; `status`: the HTTP status of a failed request.
   */
  constructor(message, { file, status, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'DotfindError';
    if (file !== undefined) this.file = file;
    if (status !== undefined) this.status = status;
  }

  /** What crosses postMessage. */
  toJSON() {
    return { name: this.name, message: this.message, file: this.file, status: this.status };
  }

  /** Any thrown value (a DotfindError, the wasm core's Error, a serialized one) as a DotfindError. */
  static from(value) {
    if (value instanceof DotfindError) return value;
    if (value && typeof value === 'object' && typeof value.message === 'string') {
      return new DotfindError(value.message, { file: value.file, status: value.status });
    }
    return new DotfindError(String(value));
  }
}

/** `value` if it is a string; anything else is named here, before it reaches wasm (which
 * would read it as garbage). */
export function requireText(value, what = 'the query') {
  if (typeof value !== 'string') {
    throw new DotfindError(`dotfind: ${what} must be a string, not ${value === null ? 'null' : typeof value}`);
  }
  return value;
}
