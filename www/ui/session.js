// What the page's modules share: the scorer (pkg/index.js) and the model it holds. Everything
// else lives in the module it belongs to.

export const session = {
  /** @type {import('../pkg/index.js').DeltaEnergyScorer | null} */
  scorer: null,
  /** The last `ready` event plus where the model came from, or null before the first load. */
  model: null,
  /** Bumps on every model load and class change; results remember the one they were scored in. */
  context: 0,
  /** Whether a model is loading now. */
  loading: false,
};
