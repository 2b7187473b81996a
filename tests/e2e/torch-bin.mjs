// Writes a `pytorch_model.bin` from a `model.safetensors`, laid out as torch.save writes one (so
// that the browser tests can put a ViT-B/32-sized PyTorch checkpoint behind the stand-in Hub
// without Python on the machine). What torch 2.15 writes, read off its files
// (tools/reference/make_torch_bins.py makes real ones for the Rust tests):
// - a zip archive whose entries all sit in one folder, each stored (not compressed), with
//   general-purpose flags 0x0808 (sizes in a data descriptor after the data, UTF-8 names), zero
//   times, and the local header's extra field an `FB` record of 'Z' padding that puts the data
//   on a multiple of 64 bytes;
// - records `data.pkl`, `.format_version` ("1"), `.storage_alignment` ("64"), `byteorder`
//   ("little"), `data/<key>` (one storage a tensor here), `version` ("3\n") and
//   `.data/serialization_id`, then the central directory, a ZIP64 end record and locator (torch
//   always writes them) and the end record;
// - `data.pkl`, pickle protocol 2: an OrderedDict (GLOBAL, EMPTY_TUPLE, REDUCE) filled by
//   SETITEMS with `torch._utils._rebuild_tensor_v2(persistent_id(('storage', torch.FloatStorage,
//   key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`, then BUILD with its
//   `_metadata`, memoised with BINPUT/BINGET as the pickler does.
//
//   node tests/e2e/torch-bin.mjs IN.safetensors OUT.bin
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';

const STORAGE = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', I64: 'LongStorage' };

/** The pickle of a state dict whose tensors are contiguous, each in its own storage `i`. */
function statePickle(tensors) {
  const out = [];
  const memo = new Map();
  let next = 0;
  const byte = (...b) => out.push(Buffer.from(b));
  const u32 = (n) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    out.push(b);
  };
  const put = () => {
    const n = next++;
    if (n < 256) byte(0x71, n); // BINPUT
    else byte(0x72), u32(n); // LONG_BINPUT
    return n;
  };
  const get = (n) => (n < 256 ? byte(0x68, n) : (byte(0x6a), u32(n))); // BINGET, LONG_BINGET
  /** Memoised values are written once, then fetched (what the pickler's memo does). */
  const once = (key, write) => {
    if (memo.has(key)) return get(memo.get(key));
    write();
    memo.set(key, put());
  };
  const str = (s) => {
    const b = Buffer.from(s, 'utf8');
    byte(0x58); // BINUNICODE
    u32(b.length);
    out.push(b);
  };
  const global = (module, name) => once(`global ${module}.${name}`, () => out.push(Buffer.from(`c${module}\n${name}\n`)));
  const int = (n) => {
    if (n < 256) byte(0x4b, n); // BININT1
    else if (n < 65536) byte(0x4d, n & 0xff, n >> 8); // BININT2
    else {
      byte(0x4a); // BININT
      u32(n);
    }
  };
  const tuple = (items) => {
    if (items.length === 0) return byte(0x29);
    if (items.length > 3) byte(0x28);
    items.forEach(int);
    byte(items.length > 3 ? 0x74 : 0x84 + items.length);
  };
  const orderedDict = () => {
    global('collections', 'OrderedDict');
    byte(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  };

  byte(0x80, 2); // PROTO 2
  orderedDict();
  put();
  byte(0x28); // MARK
  tensors.forEach((t, i) => {
    str(t.key);
    put();
    global('torch._utils', '_rebuild_tensor_v2');
    byte(0x28, 0x28); // MARK (arguments), MARK (persistent id)
    once('str storage', () => str('storage'));
    global('torch', STORAGE[t.dtype]);
    str(String(i));
    put();
    once('str cpu', () => str('cpu'));
    const numel = t.shape.reduce((a, b) => a * b, 1);
    int(numel);
    byte(0x74); // TUPLE
    put();
    byte(0x51); // BINPERSID
    int(0);
    tuple(t.shape);
    put();
    tuple(t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1)));
    put();
    byte(0x89); // NEWFALSE
    orderedDict();
    put();
    byte(0x74); // TUPLE
    put();
    byte(0x52); // REDUCE
    put();
  });
  byte(0x75); // SETITEMS
  // The state dict's `_metadata` attribute (its modules' versions): an empty one here.
  byte(0x7d); // EMPTY_DICT
  put();
  str('_metadata');
  put();
  orderedDict();
  put();
  byte(0x73, 0x62, 0x2e); // SETITEM, BUILD, STOP
  return Buffer.concat(out);
}

/** Writes the archive's entries in torch's layout; returns nothing until the file is closed. */
async function writeArchive(out, folder, records) {
  const file = await open(out, 'w');
  let at = 0;
  const write = async (buf) => {
    await file.write(buf, 0, buf.length, at);
    at += buf.length;
  };
  const central = [];
  try {
    for (const { name, size, chunks } of records) {
      const full = Buffer.from(`${folder}/${name}`, 'utf8');
      const start = at;
      const pad = (64 - ((start + 30 + full.length + 4) % 64)) % 64;
      const extra = Buffer.concat([Buffer.from('FB'), Buffer.from([pad & 0xff, pad >> 8]), Buffer.alloc(pad, 'Z')]);
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(0x0808, 6);
      local.writeUInt16LE(full.length, 26);
      local.writeUInt16LE(extra.length, 28);
      await write(Buffer.concat([local, full, extra]));
      let crc = 0;
      for await (const chunk of chunks()) {
        crc = zlib.crc32(chunk, crc);
        await write(chunk);
      }
      const descriptor = Buffer.alloc(16);
      descriptor.writeUInt32LE(0x08074b50, 0);
      descriptor.writeUInt32LE(crc >>> 0, 4);
      descriptor.writeUInt32LE(size, 8);
      descriptor.writeUInt32LE(size, 12);
      await write(descriptor);
      central.push({ full, crc, size, start });
    }
    const dirStart = at;
    for (const { full, crc, size, start } of central) {
      const h = Buffer.alloc(46);
      h.writeUInt32LE(0x02014b50, 0);
      h.writeUInt16LE(0x0808, 8);
      h.writeUInt32LE(crc >>> 0, 16);
      h.writeUInt32LE(size, 20);
      h.writeUInt32LE(size, 24);
      h.writeUInt16LE(full.length, 28);
      h.writeUInt32LE(start, 42);
      await write(Buffer.concat([h, full]));
    }
    const dirSize = at - dirStart;
    const zip64At = at;
    const zip64 = Buffer.alloc(56);
    zip64.writeUInt32LE(0x06064b50, 0);
    zip64.writeBigUInt64LE(44n, 4);
    zip64.writeUInt16LE(0x031e, 12);
    zip64.writeUInt16LE(0x002d, 14);
    zip64.writeBigUInt64LE(BigInt(central.length), 24);
    zip64.writeBigUInt64LE(BigInt(central.length), 32);
    zip64.writeBigUInt64LE(BigInt(dirSize), 40);
    zip64.writeBigUInt64LE(BigInt(dirStart), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(zip64At), 8);
    locator.writeUInt32LE(1, 16);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(central.length, 8);
    end.writeUInt16LE(central.length, 10);
    end.writeUInt32LE(dirSize, 12);
    end.writeUInt32LE(dirStart, 16);
    await write(Buffer.concat([zip64, locator, end]));
  } finally {
    await file.close();
  }
}

/** Converts a safetensors file into a PyTorch checkpoint of the same tensors, in its order. */
export async function safetensorsToTorch(input, output) {
  const fh = await open(input, 'r');
  try {
    const head = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    const n = Number(head.readBigUInt64LE(0));
    const json = Buffer.alloc(n);
    await fh.read(json, 0, n, 8);
    const toc = JSON.parse(json.toString('utf8'));
    delete toc.__metadata__;
    const tensors = Object.entries(toc)
      .map(([key, e]) => ({ key, dtype: e.dtype, shape: e.shape, start: 8 + n + e.data_offsets[0], end: 8 + n + e.data_offsets[1] }))
      .sort((a, b) => a.start - b.start);
    for (const t of tensors) {
      if (!STORAGE[t.dtype]) throw new Error(`${t.key}: dtype ${t.dtype} has no storage here`);
    }
    const text = (s) => ({ size: Buffer.byteLength(s), chunks: async function* () { yield Buffer.from(s); } });
    const pkl = statePickle(tensors);
    const records = [
      { name: 'data.pkl', size: pkl.length, chunks: async function* () { yield pkl; } },
      { name: '.format_version', ...text('1') },
      { name: '.storage_alignment', ...text('64') },
      { name: 'byteorder', ...text('little') },
      ...tensors.map((t, i) => ({
        name: `data/${i}`,
        size: t.end - t.start,
        chunks: async function* () {
          for (let at = t.start; at < t.end; at += 8 << 20) {
            const part = Buffer.alloc(Math.min(8 << 20, t.end - at));
            await fh.read(part, 0, part.length, at);
            yield part;
          }
        },
      })),
      { name: 'version', ...text('3\n') },
      { name: '.data/serialization_id', ...text('0'.repeat(40)) },
    ];
    const folder = path.basename(output).replace(/\.[^.]*$/, '');
    await writeArchive(output, folder, records);
  } finally {
    await fh.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node tests/e2e/torch-bin.mjs IN.safetensors OUT.bin');
    process.exit(2);
  }
  await safetensorsToTorch(input, output);
  console.log(`${output}: ${(await readFile(output)).length} bytes`);
}
