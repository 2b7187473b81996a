//! A Hugging Face checkpoint read by byte ranges: `model.safetensors`, or `pytorch_model.bin`
//! (PyTorch's zip archive), told apart by their first bytes. Nothing here does I/O: an
//! [`Opener`] says which bytes it needs to learn where every tensor lies, then a
//! [`TensorRead`] which bytes hold one tensor; the caller fetches them from wherever the file is
//! (a file natively, a `Blob.slice` or an HTTP Range request in the browser: see `web::Import`)
//! and hands them back. So the whole file is never in memory, and both formats, both builds and
//! every source share one reader. Everything read is checked before it is trusted: the file is
//! a stranger's.

mod pickle;
mod safetensors;
mod torch;
mod zip;

use std::collections::HashMap;
use std::ops::Range;

use crate::clip::loader::{check_shape, decode_values, Init, WeightSource};
use crate::error::{Error, Result};

pub use self::safetensors::MAX_HEADER_BYTES;

/// How many first bytes tell the formats apart (a tar header's magic sits at 257).
const SNIFF: u64 = 264;

/// How far past a zip entry's name its data is guessed to start: torch pads the local header's
/// extra field to align the data on 64 bytes (at most 4 + 63 bytes), and a ZIP64 field may
/// add 20. Reading that much more with the data saves a request per tensor; a longer extra
/// field costs a second read, never a wrong one.
const LOCAL_EXTRA_GUESS: u64 = 128;

/// The two weight files of a Hugging Face checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    PyTorch,
}

impl Format {
    /// The file name transformers gives it.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Safetensors => "model.safetensors",
            Format::PyTorch => "pytorch_model.bin",
        }
    }
}

/// A tensor's dtype, shape and place in the file.
#[derive(Clone, Debug)]
pub struct Entry {
    pub dtype: ::safetensors::Dtype,
    pub shape: Vec<usize>,
    place: Place,
}

#[derive(Clone, Debug)]
enum Place {
    /// Exactly these bytes, row-major (safetensors).
    Exact(Range<u64>),
    /// A view of a storage stored in a zip entry (PyTorch). Offset, span and strides are in
    /// elements.
    Stored {
        zip: zip::ZipEntry,
        element_size: u64,
        offset: u64,
        span: u64,
        stride: Vec<usize>,
    },
}

/// The bytes from the start of a zip entry's local header to `len` bytes into its data, read
/// as the data's offset becomes known (see [`LOCAL_EXTRA_GUESS`]).
#[derive(Clone, Debug)]
struct InZip {
    zip: zip::ZipEntry,
    len: u64,
    buf: Vec<u8>,
    data_at: Option<u64>,
}

impl InZip {
    fn new(zip: zip::ZipEntry, len: u64) -> Self {
        Self {
            zip,
            len,
            buf: Vec::new(),
            data_at: None,
        }
    }

    /// The next range to read, or None once `len` bytes of data are in.
    fn need(&self, file_len: u64) -> Result<Option<Range<u64>>> {
        let start = self.zip.header + self.buf.len() as u64;
        let end = match self.data_at {
            None => (self.zip.header + zip::LOCAL_LEN + self.zip.name.len() as u64)
                .saturating_add(LOCAL_EXTRA_GUESS)
                .saturating_add(self.len)
                .min(file_len),
            Some(at) => self.zip.header.saturating_add(at).saturating_add(self.len),
        };
        if end > file_len {
            return Err(zip::bad(format!(
                "`{}` lies outside the file (is it complete?)",
                self.zip.name
            )));
        }
        Ok((start < end).then_some(start..end))
    }

    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.data_at.is_none() {
            self.data_at = Some(zip::data_offset(&self.zip, &self.buf)?);
        }
        Ok(())
    }

    /// The data read, checked against the entry's CRC-32 when all of it was read (a CRC of 0 is
    /// what torch writes when told not to compute them, and torch.load accepts it).
    fn data(&self) -> Result<&[u8]> {
        let at = self.data_at.expect("read before use") as usize;
        let data = &self.buf[at..at + self.len as usize];
        if let Some(whole) = self.buf.get(at..at + self.zip.size as usize) {
            if self.zip.crc32 != 0 && crc32fast::hash(whole) != self.zip.crc32 {
                return Err(zip::bad(format!(
                    "the bytes of `{}` do not match their CRC-32 (the file is damaged)",
                    self.zip.name
                )));
            }
        }
        Ok(data)
    }
}

/// Where every tensor of a checkpoint lies.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub format: Format,
    entries: HashMap<String, Entry>,
    /// Size of the whole file.
    pub file_len: u64,
}

impl Checkpoint {
    /// Where the tensor `key` lies, after checking it is there with this shape.
    pub fn entry(&self, key: &str, shape: &[usize]) -> Result<&Entry> {
        let e = self.entries.get(key).ok_or_else(|| Error::MissingTensor {
            key: key.to_string(),
            expected: shape.to_vec(),
        })?;
        check_shape(key, shape, &e.shape)?;
        Ok(e)
    }

    /// Starts reading the tensor `key` of this shape.
    pub fn read(&self, key: &str, shape: &[usize]) -> Result<TensorRead> {
        let entry = self.entry(key, shape)?.clone();
        let state = match &entry.place {
            // An empty tensor needs no bytes (and an empty HTTP range cannot be asked for).
            Place::Exact(range) if range.is_empty() => {
                Reading::Exact(range.clone(), Some(Vec::new()))
            }
            Place::Exact(range) => Reading::Exact(range.clone(), None),
            Place::Stored {
                zip,
                element_size,
                offset,
                span,
                ..
            } => Reading::Stored(InZip::new(zip.clone(), (offset + span) * element_size)),
        };
        Ok(TensorRead {
            key: key.to_string(),
            entry,
            file_len: self.file_len,
            state,
        })
    }

    /// The names of its tensors (any order).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

#[derive(Debug)]
enum Reading {
    Exact(Range<u64>, Option<Vec<u8>>),
    Stored(InZip),
}

/// One tensor being read: [`TensorRead::need`] says which bytes to fetch next, [`push`]
/// takes them, [`finish`] decodes the values once nothing more is needed.
///
/// [`push`]: TensorRead::push
/// [`finish`]: TensorRead::finish
#[derive(Debug)]
pub struct TensorRead {
    key: String,
    entry: Entry,
    file_len: u64,
    state: Reading,
}

impl TensorRead {
    /// The next byte range to read, or None when the tensor's bytes are all in.
    pub fn need(&self) -> Result<Option<Range<u64>>> {
        match &self.state {
            Reading::Exact(range, None) => Ok(Some(range.clone())),
            Reading::Exact(_, Some(_)) => Ok(None),
            Reading::Stored(z) => z.need(self.file_len),
        }
    }

    /// Exactly the bytes of the range [`TensorRead::need`] gave.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(want) = self.need()? else {
            return Err(Error::Input(format!(
                "tensor `{}` is read already",
                self.key
            )));
        };
        if bytes.len() as u64 != want.end - want.start {
            return Err(Error::Weights(format!(
                "tensor `{}`: got {} bytes, expected {}",
                self.key,
                bytes.len(),
                want.end - want.start
            )));
        }
        match &mut self.state {
            Reading::Exact(_, held) => *held = Some(bytes.to_vec()),
            Reading::Stored(z) => z.push(bytes)?,
        }
        Ok(())
    }

    /// The values, row-major, widened to f32 and checked finite.
    pub fn finish(self) -> Result<Vec<f32>> {
        if self.need()?.is_some() {
            return Err(Error::Input(format!(
                "tensor `{}` is not read yet",
                self.key
            )));
        }
        let key = &self.key;
        let values = match (&self.state, &self.entry.place) {
            (Reading::Exact(_, Some(bytes)), _) => decode_values(key, self.entry.dtype, bytes)?,
            (
                Reading::Stored(z),
                Place::Stored {
                    element_size,
                    offset,
                    stride,
                    ..
                },
            ) => {
                let data = z.data()?;
                let size = *element_size as usize;
                let at = *offset as usize * size;
                let numel: usize = self.entry.shape.iter().product();
                if contiguous(&self.entry.shape, stride) {
                    decode_values(key, self.entry.dtype, &data[at..at + numel * size])?
                } else {
                    let bytes = gather(&data[at..], &self.entry.shape, stride, size);
                    decode_values(key, self.entry.dtype, &bytes)?
                }
            }
            _ => unreachable!("the reading matches the place"),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { key: key.clone() });
        }
        Ok(values)
    }
}

/// Whether strides are the row-major ones for this shape (any stride of a length-1 axis will do).
fn contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// The elements of a strided view, row-major, `size` bytes each.
fn gather(data: &[u8], shape: &[usize], stride: &[usize], size: usize) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at: usize = index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>() * size;
        out.extend_from_slice(&data[at..at + size]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Learns where a checkpoint's tensors lie: [`Opener::need`] says which bytes to read next,
/// [`Opener::push`] takes them; once `need` says none, [`Opener::finish`] gives the table.
#[derive(Debug)]
pub struct Opener {
    file_len: u64,
    step: Step,
}

#[derive(Debug)]
enum Step {
    Sniff,
    SafetensorsHeader(u64),
    ZipEnd,
    Zip64End(u64),
    ZipDirectory(zip::Directory),
    ZipPickle(Box<torch::Archive>, InZip),
    Ready(Checkpoint),
    Failed,
}

impl Opener {
    pub fn new(file_len: u64) -> Self {
        Self {
            file_len,
            step: Step::Sniff,
        }
    }

    /// The next byte range to read, or None when the table of contents is complete.
    pub fn need(&self) -> Result<Option<Range<u64>>> {
        let len = self.file_len;
        Ok(Some(match &self.step {
            Step::Sniff => 0..len.min(SNIFF),
            Step::SafetensorsHeader(n) => 0..*n,
            Step::ZipEnd => len - len.min(zip::TAIL)..len,
            Step::Zip64End(at) => *at..at + zip::ZIP64_EOCD_LEN,
            Step::ZipDirectory(d) => d.range.clone(),
            Step::ZipPickle(_, z) => return z.need(len),
            Step::Ready(_) => return Ok(None),
            Step::Failed => return Err(Error::Input("the checkpoint failed to open".into())),
        }))
    }

    /// Exactly the bytes of the range [`Opener::need`] gave.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(want) = self.need()? else {
            return Err(Error::Input("the checkpoint is open already".into()));
        };
        if bytes.len() as u64 != want.end - want.start {
            return Err(Error::Weights(format!(
                "got {} bytes of the checkpoint, expected {}",
                bytes.len(),
                want.end - want.start
            )));
        }
        let step = std::mem::replace(&mut self.step, Step::Failed);
        self.step = self.advance(step, bytes, want.start)?;
        Ok(())
    }

    fn advance(&self, step: Step, bytes: &[u8], start: u64) -> Result<Step> {
        let len = self.file_len;
        Ok(match step {
            Step::Sniff => match sniff(bytes)? {
                Format::Safetensors => {
                    let total = safetensors::prefix_len(bytes, len)?;
                    if total <= bytes.len() as u64 {
                        self.ready_safetensors(&bytes[..total as usize])?
                    } else {
                        Step::SafetensorsHeader(total)
                    }
                }
                Format::PyTorch => Step::ZipEnd,
            },
            Step::SafetensorsHeader(_) => self.ready_safetensors(bytes)?,
            Step::ZipEnd => match zip::read_end(bytes, start, len)? {
                zip::End::Directory(d) => self.directory(d, Some((start, bytes)))?,
                zip::End::Zip64At(at) => match slice(start, bytes, at..at + zip::ZIP64_EOCD_LEN) {
                    Some(record) => {
                        let d = zip::read_zip64_end(record, at, len)?;
                        self.directory(d, Some((start, bytes)))?
                    }
                    None => Step::Zip64End(at),
                },
            },
            Step::Zip64End(at) => self.directory(zip::read_zip64_end(bytes, at, len)?, None)?,
            Step::ZipDirectory(d) => self.directory(d, Some((start, bytes)))?,
            Step::ZipPickle(archive, mut z) => {
                z.push(bytes)?;
                if z.need(len)?.is_some() {
                    Step::ZipPickle(archive, z)
                } else {
                    Step::Ready(Checkpoint {
                        format: Format::PyTorch,
                        entries: torch::entries(&archive, z.data()?)?,
                        file_len: len,
                    })
                }
            }
            Step::Ready(_) | Step::Failed => unreachable!("need() refuses these"),
        })
    }

    fn ready_safetensors(&self, prefix: &[u8]) -> Result<Step> {
        Ok(Step::Ready(Checkpoint {
            format: Format::Safetensors,
            entries: safetensors::entries(prefix, self.file_len)?,
            file_len: self.file_len,
        }))
    }

    /// The directory, from `held` (bytes already read, at their offset) when they hold it.
    fn directory(&self, d: zip::Directory, held: Option<(u64, &[u8])>) -> Result<Step> {
        let Some(bytes) = held.and_then(|(at, b)| slice(at, b, d.range.clone())) else {
            return Ok(Step::ZipDirectory(d));
        };
        let archive = torch::archive(zip::read_directory(bytes, d.entries, self.file_len)?)?;
        let z = InZip::new(archive.pickle.clone(), archive.pickle.size);
        Ok(Step::ZipPickle(Box::new(archive), z))
    }

    /// The table of contents, once [`Opener::need`] says nothing more is needed.
    pub fn finish(self) -> Result<Checkpoint> {
        match self.step {
            Step::Ready(c) => Ok(c),
            _ => Err(Error::Input("the checkpoint is not open yet".into())),
        }
    }
}

/// `range` out of `bytes` read at `at`, if they hold all of it.
fn slice(at: u64, bytes: &[u8], range: Range<u64>) -> Option<&[u8]> {
    let a = usize::try_from(range.start.checked_sub(at)?).ok()?;
    let b = usize::try_from(range.end.checked_sub(at)?).ok()?;
    bytes.get(a..b)
}

/// Which format the first bytes are. PyTorch's formats from before its zip archive are refused
/// by name, and so is anything that is neither format.
fn sniff(first: &[u8]) -> Result<Format> {
    // torch < 1.6: a pickle of the magic number 0x1950a86a20f9469cfc6c (a LONG1 of 10 bytes),
    // then more pickles and the raw storages; torch < 0.4: a tar archive.
    const LEGACY: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
    let old = if first.starts_with(LEGACY) {
        "PyTorch's legacy format (torch < 1.6)"
    } else if first.get(257..262) == Some(b"ustar") {
        "a tar archive (PyTorch's format before 0.4)"
    } else if first.starts_with(b"PK\x03\x04") || first.starts_with(b"PK\x05\x06") {
        return Ok(Format::PyTorch);
    } else if first.len() < 9 || first[8] == b'{' {
        // A length, then the JSON table of contents: its reader says what else is wrong.
        return Ok(Format::Safetensors);
    } else {
        let start: Vec<String> = first.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(Error::Weights(format!(
            "neither a safetensors file nor a PyTorch checkpoint (it starts with {}); the \
             weights are model.safetensors or pytorch_model.bin",
            start.join(" ")
        )));
    };
    Err(Error::Weights(format!(
        "the weights are in {old}, which cannot be read a tensor at a time: load them with \
         torch and save them again (torch.save, or transformers' save_pretrained, which writes \
         model.safetensors)"
    )))
}

/// Reads byte ranges of a file, wherever it is.
pub trait ReadAt {
    fn read_at(&mut self, range: Range<u64>) -> Result<Vec<u8>>;
}

impl ReadAt for &[u8] {
    fn read_at(&mut self, range: Range<u64>) -> Result<Vec<u8>> {
        let bytes = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(a, b)| self.get(a..b));
        bytes.map(<[u8]>::to_vec).ok_or_else(|| {
            Error::Weights(format!(
                "bytes {range:?} lie outside the {} read",
                self.len()
            ))
        })
    }
}

/// A file on disk, read a range at a time.
#[cfg(not(target_family = "wasm"))]
pub struct FileReader {
    file: std::fs::File,
    path: std::path::PathBuf,
}

#[cfg(not(target_family = "wasm"))]
impl FileReader {
    pub fn open(path: &std::path::Path) -> Result<(Self, u64)> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            len,
        ))
    }
}

#[cfg(not(target_family = "wasm"))]
impl ReadAt for FileReader {
    fn read_at(&mut self, range: Range<u64>) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = vec![0; (range.end - range.start) as usize];
        self.file
            .seek(SeekFrom::Start(range.start))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|source| Error::Io {
                path: self.path.display().to_string(),
                source,
            })?;
        Ok(buf)
    }
}

/// Reads the table of contents of a checkpoint of `file_len` bytes from `reader`, showing
/// `seen` every byte read.
pub fn open(
    reader: &mut impl ReadAt,
    file_len: u64,
    mut seen: impl FnMut(&[u8]),
) -> Result<Checkpoint> {
    let mut opener = Opener::new(file_len);
    while let Some(range) = opener.need()? {
        let bytes = reader.read_at(range)?;
        seen(&bytes);
        opener.push(&bytes)?;
    }
    opener.finish()
}

/// A checkpoint as a [`WeightSource`]: each tensor read from `reader` when the builder asks.
pub struct CheckpointSource<R: ReadAt> {
    checkpoint: Checkpoint,
    reader: R,
    /// Every byte read, in order: what identifies the weights the model was built from.
    digest: sha2::Sha256,
}

impl<R: ReadAt> CheckpointSource<R> {
    pub fn new(mut reader: R, file_len: u64) -> Result<Self> {
        let mut digest = sha2::Sha256::default();
        let checkpoint = open(&mut reader, file_len, |b| {
            sha2::Digest::update(&mut digest, b)
        })?;
        Ok(Self {
            checkpoint,
            reader,
            digest,
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// SHA-256 of the bytes read so far (all the model needs, once it is built).
    pub fn digest(&self) -> [u8; 32] {
        sha2::Digest::finalize(self.digest.clone()).into()
    }
}

impl<R: ReadAt> WeightSource for CheckpointSource<R> {
    fn take(&mut self, key: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>> {
        let mut read = self.checkpoint.read(key, shape)?;
        while let Some(range) = read.need()? {
            let bytes = self.reader.read_at(range)?;
            sha2::Digest::update(&mut self.digest, &bytes);
            read.push(&bytes)?;
        }
        read.finish()
    }
}
