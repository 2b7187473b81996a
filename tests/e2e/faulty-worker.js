// A test double around the package's worker: it is worker.js, except that a request named on
// the BroadcastChannel "deltaenergy-faults" fails once with the error given, as a trap in the
// wasm (CrashError) or a lost GPU (DeviceError) would make it fail: at once, or with
// `midRun: true` after the request has started and reported its first progress (the request
// runs on; its later messages are dropped, as a trapped module sends none). lib/site.mjs copies
// it beside worker.js and passes it as `workerUrl`; the channel answers "armed" once the fault
// is set.
const faults = [];
const channel = new BroadcastChannel('deltaenergy-faults');
channel.onmessage = ({ data }) => {
  faults.push(data);
  channel.postMessage('armed');
};
/** Requests failed mid-run: their id → the fault, and whether it has been sent. */
const failing = new Map();
const post = self.postMessage.bind(self);
self.postMessage = (message, transfer) => {
  const f = failing.get(message?.id);
  if (!f) return post(message, transfer);
  if (f.sent) return undefined;
  f.sent = true;
  return post({ id: message.id, kind: 'error', error: { name: f.fault.name, message: f.fault.message } });
};
await import('./worker.js');
const real = self.onmessage;
self.onmessage = (event) => {
  const at = faults.findIndex((f) => f.op === event.data?.op);
  if (at < 0) return real.call(self, event);
  const [f] = faults.splice(at, 1);
  if (f.midRun) {
    failing.set(event.data.id, { fault: f, sent: false });
    return real.call(self, event);
  }
  post({ id: event.data.id, kind: 'error', error: { name: f.name, message: f.message } });
};
