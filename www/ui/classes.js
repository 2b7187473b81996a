// The class editor: the names the model should know. The scorer cleans the list (commas and
// new lines separate names; blanks and repeats are dropped) and says what it kept.

import { $ } from './dom.js';
import { session } from './session.js';
import { setStatus, showError, showProgress, hideProgress } from './status.js';
import { keepThresholdForClasses } from './threshold.js';
import { markStale, updateControls } from './results.js';
import { chosenTemplates } from './presets.js';
import { emit, on } from './events.js';

export function fillClassEditor(classes) {
  $('classes').value = classes.join('\n');
}

/** Applies the editor's text; resolves to whether it worked. */
export async function applyClasses(text) {
  const button = $('apply-classes');
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  setStatus('Computing text features for the new classes…');
  showProgress({ status: 'classes', done: 0, total: 0, cached: false });
  const t0 = performance.now();
  $('stop-classes').hidden = false;
  let stopped = false;
  $('stop-classes').onclick = () => {
    stopped = true;
    session.scorer.cancelClasses();
  };
  try {
    const templates = await chosenTemplates();
    const info = await session.scorer.setClasses(text, { templates, onProgress: (p) => showProgress(p, t0) });
    session.model.info = info;
    session.context += 1;
    markStale();
    await emit('model-info-changed');
    fillClassEditor(info.classes);
    await keepThresholdForClasses(info);
    const prompts = info.templates.length > 1 ? `, each the mean of ${info.templates.length} prompts` : '';
    setStatus(`Classes applied: ${info.classes.length} classes${prompts}. New images use them.`);
    $('classes').dataset.applied = String(session.context);
    return true;
  } catch (e) {
    if (stopped) {
      setStatus('Stopped: the classes were not changed.');
    } else {
      showError(`Could not apply the classes: ${e.message}. The current classes stay in use.`);
      setStatus('The classes were not changed.');
    }
    return false;
  } finally {
    $('stop-classes').hidden = true;
    hideProgress();
    button.removeAttribute('aria-busy');
    updateControls();
  }
}

export function initClassEditor() {
  on('preset-classes', fillClassEditor);
  $('classes-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (session.model) applyClasses($('classes').value);
  });
  $('reset-classes').addEventListener('click', () => {
    if (!session.model) return;
    fillClassEditor(session.model.info.bundleClasses);
    $('classes').focus();
    setStatus('The bundle’s classes are in the editor; press “Apply classes” to use them.');
  });
}
