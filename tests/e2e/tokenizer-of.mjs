// Writes the tokenizer a bundle carries, both as the gzip a bundle stores (`bpe.txt.gz`, which
// the CLI's --tokenizer reads) and as Hugging Face's `merges.txt` (what the page's import takes),
// so the import tests need no data set.   node tests/e2e/tokenizer-of.mjs BUNDLE OUTDIR
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';

const [bundlePath, out] = process.argv.slice(2);
const b = await readFile(bundlePath);
const headerLen = b.readUInt32LE(12);
const header = JSON.parse(b.subarray(48, 48 + headerLen).toString('utf8'));
const dataStart = Math.ceil((48 + headerLen) / 64) * 64;
const { offset, length } = header.tokenizer;
const gz = b.subarray(dataStart + offset, dataStart + offset + length);
await mkdir(out, { recursive: true });
await writeFile(path.join(out, 'bpe.txt.gz'), gz);
await writeFile(path.join(out, 'merges.txt'), zlib.gunzipSync(gz));
