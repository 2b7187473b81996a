// A test double around the package's worker: it is worker.js, except that a request named on
// the BroadcastChannel "deltaenergy-faults" fails once with the error given, as a trap in the
// wasm (CrashError) or a lost GPU (DeviceError) would make it fail. lib/site.mjs copies it beside
// worker.js and passes it as `workerUrl`; the channel answers "armed" once the fault is set.
const faults = [];
const channel = new BroadcastChannel('deltaenergy-faults');
channel.onmessage = ({ data }) => {
  faults.push(data);
  channel.postMessage('armed');
};
await import('./worker.js');
const real = self.onmessage;
self.onmessage = (event) => {
  const at = faults.findIndex((f) => f.op === event.data?.op);
  if (at < 0) return real.call(self, event);
  const [f] = faults.splice(at, 1);
  self.postMessage({ id: event.data.id, kind: 'error', error: { name: f.name, message: f.message } });
};
