// What one part of the page tells the others without importing them (which would make the
// modules import each other in circles): the threshold moved, the model's description
// changed, a preset filled the class list. A module emits; the ones that care listen.

/** @type {Map<string, Array<(...args: any[]) => unknown>>} */
const handlers = new Map();

/**
 * @param {'threshold-changed' | 'model-info-changed' | 'preset-classes'} name
 * @param {(...args: any[]) => unknown} fn
 */
export function on(name, fn) {
  handlers.set(name, [...(handlers.get(name) ?? []), fn]);
}

/** Calls every listener of `name`; resolves once the asynchronous ones are done. */
export async function emit(name, ...args) {
  await Promise.all((handlers.get(name) ?? []).map((fn) => fn(...args)));
}
