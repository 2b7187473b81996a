// The package as another web app uses it: installed from the packed tarball
// (npm install ../../target/package/deltaenergy-0.1.0.tgz), imported by path, no bundler.
import { createScorer } from './node_modules/deltaenergy/index.js';

const status = document.getElementById('status');
const input = document.getElementById('image');
const out = document.getElementById('result');

try {
  const scorer = await createScorer({ model: 'models/cifar-clip.q8.bundle' });
  status.textContent = `Ready on ${scorer.device}: ${scorer.deviceReason.message}`;
  input.disabled = false;
  input.addEventListener('change', async () => {
    const result = await scorer.classify(input.files[0]);
    const verdict = result.ood ? 'out-of-distribution' : 'in-distribution';
    out.textContent = `${result.label}, ${verdict} (ΔE ${result.scores.deltaEnergy.toFixed(3)})`;
    out.dataset.label = result.label;
    out.dataset.ood = String(result.ood);
    out.dataset.deltaEnergy = String(result.scores.deltaEnergy);
  });
} catch (e) {
  status.textContent = `Could not load the model: ${e.message}`;
}
