// The images scored in this visit, one record each (its card, its table row, its verdict): the
// results queue adds them, the batch table and the threshold read them.

import { session } from './session.js';

/** @type {Array<{seq: number, name: string, url: string, context: number, result: any, ood: boolean|null, card: any, row?: any}>} */
export const records = [];

export const scoredRecords = () => records.filter((r) => r.result);

/** This model's and class list's values of one score, for the threshold's range. */
export function currentScores(score) {
  return records.filter((r) => r.result && r.context === session.context).map((r) => r.result.scores[score]);
}
