// @ts-check
// A hot value with latest-value subscriptions, like the Go SDK's
// internal/hot: a late subscriber gets the current value at once.

/**
 * @template T
 */
export class HotValue {
  #value;
  #subs = new Set();
  #closed = false;

  /** @param {T} initial */
  constructor(initial) {
    this.#value = initial;
  }

  /** @returns {T} the current value */
  get value() {
    return this.#value;
  }

  /**
   * Sets the value and tells every subscriber (when it changed). A throwing
   * subscriber is reported on the console and does not stop the others.
   * @param {T} v
   */
  set(v) {
    if (this.#closed || Object.is(v, this.#value)) return;
    this.#value = v;
    for (const fn of [...this.#subs]) call(fn, v);
  }

  /**
   * Calls fn with the current value now and with every later value, until
   * unsubscribe() is called.
   * @param {(v: T) => void} fn
   * @returns {{unsubscribe(): void}}
   */
  subscribe(fn) {
    if (typeof fn !== 'function') throw new TypeError('subscribe wants a function');
    this.#subs.add(fn);
    call(fn, this.#value);
    return { unsubscribe: () => this.#subs.delete(fn) };
  }

  /** Stops delivering values and drops every subscriber. */
  close() {
    this.#closed = true;
    this.#subs.clear();
  }
}

/**
 * @template T
 * @param {(v: T) => void} fn
 * @param {T} v
 */
function call(fn, v) {
  try {
    fn(v);
  } catch (e) {
    console.error('duet: a subscriber threw', e);
  }
}
