//! The part of Python's pickle format that `torch.save` writes for a state dict (`data.pkl`),
//! read without running anything: the only callables it knows are the ones that rebuild an
//! `OrderedDict`, a tensor or a parameter, and the only persistent ids are torch's storages.
//! Anything else (a NumPy array, a custom class) is refused by name.
//!
//! Objects live in one arena and the stack, the memo and containers hold indices into it, so a
//! memoised object shared a million times costs one index each, mutation through `SETITEMS`
//! reaches every holder (as in Python), and nothing is recursive.

use std::collections::HashMap;

use safetensors::Dtype;

use crate::error::{Error, Result};

/// The largest `data.pkl` read (a CLIP's has tens of kilobytes).
pub const MAX_PICKLE: u64 = 64 << 20;

/// The most dimensions a tensor may have.
const MAX_DIMS: usize = 32;

/// A storage as a persistent id names it: `('storage', torch.FloatStorage, key, location,
/// numel)`; its bytes are the archive's `data/<key>`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: Dtype,
    pub numel: u64,
}

/// A tensor as `torch._utils._rebuild_tensor_v2` describes it: a view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// In elements.
    pub offset: u64,
    pub shape: Vec<usize>,
    /// In elements.
    pub stride: Vec<usize>,
}

/// The callables and classes a state dict's pickle may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

#[derive(Clone, Debug)]
enum Object {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

fn bad(m: impl std::fmt::Display) -> Error {
    Error::Weights(format!("data.pkl: {m}"))
}

fn global(module: &str, name: &str) -> Result<Global> {
    let dtype = |t| Ok(Global::Storage(t));
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Ok(Global::RebuildParameter)
        }
        ("torch", "FloatStorage") => dtype(Dtype::F32),
        ("torch", "HalfStorage") => dtype(Dtype::F16),
        ("torch", "BFloat16Storage") => dtype(Dtype::BF16),
        ("torch", "DoubleStorage") => dtype(Dtype::F64),
        ("torch", "LongStorage") => dtype(Dtype::I64),
        ("torch", "IntStorage") => dtype(Dtype::I32),
        ("torch", "ShortStorage") => dtype(Dtype::I16),
        ("torch", "CharStorage") => dtype(Dtype::I8),
        ("torch", "ByteStorage") => dtype(Dtype::U8),
        ("torch", "BoolStorage") => dtype(Dtype::BOOL),
        _ => Err(bad(format!(
            "it needs `{module}.{name}`, which a state dict of tensors does not use; only \
             plain tensors can be read (nothing in the file is run)"
        ))),
    }
}

struct Machine<'a> {
    pkl: &'a [u8],
    at: usize,
    arena: Vec<Object>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u32, usize>,
}

impl<'a> Machine<'a> {
    fn new(pkl: &'a [u8]) -> Self {
        Self {
            pkl,
            at: 0,
            arena: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let bytes = self
            .at
            .checked_add(n)
            .and_then(|end| self.pkl.get(self.at..end))
            .ok_or_else(|| bad(format!("it ends inside an instruction (byte {})", self.at)))?;
        self.at += n;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.pkl[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("a global's name is not terminated"))?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| bad("a global's name is not UTF-8"))
    }

    fn text(&mut self, n: u64) -> Result<()> {
        let n = usize::try_from(n).map_err(|_| bad("a string longer than memory"))?;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| bad("a string is not UTF-8"))?;
        self.push(Object::Str(s.to_owned()));
        Ok(())
    }

    fn push(&mut self, object: Object) {
        self.arena.push(object);
        self.stack.push(self.arena.len() - 1);
    }

    fn pop(&mut self) -> Result<usize> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(bad("an instruction takes an object past a mark"));
        }
        self.stack.pop().ok_or_else(|| bad("the stack is empty"))
    }

    fn top(&self) -> Result<usize> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| bad("the stack is empty"))
    }

    /// The objects pushed since the last mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<usize>> {
        let mark = self.marks.pop().ok_or_else(|| bad("no mark to pop to"))?;
        Ok(self.stack.split_off(mark))
    }

    fn tuple(&mut self, items: Vec<usize>) {
        self.push(Object::Tuple(items));
    }

    fn int(&self, id: usize, what: &str) -> Result<i64> {
        match self.arena[id] {
            Object::Int(v) => Ok(v),
            Object::Bool(b) => Ok(b as i64),
            _ => Err(bad(format!("{what} is not an integer"))),
        }
    }

    fn usize(&self, id: usize, what: &str) -> Result<usize> {
        usize::try_from(self.int(id, what)?).map_err(|_| bad(format!("{what} is negative")))
    }

    fn ints(&self, id: usize, what: &str) -> Result<Vec<usize>> {
        let Object::Tuple(items) = &self.arena[id] else {
            return Err(bad(format!("{what} is not a tuple")));
        };
        if items.len() > MAX_DIMS {
            return Err(bad(format!("{what} has {} dimensions", items.len())));
        }
        items.iter().map(|&i| self.usize(i, what)).collect()
    }

    fn set_items(&mut self, dict: usize, items: Vec<usize>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(bad("a dictionary update with an odd number of objects"));
        }
        let Object::Dict(entries) = &mut self.arena[dict] else {
            return Err(bad("items set on something that is not a dictionary"));
        };
        entries.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
        Ok(())
    }

    fn append(&mut self, list: usize, items: Vec<usize>) -> Result<()> {
        let Object::List(values) = &mut self.arena[list] else {
            return Err(bad("items appended to something that is not a list"));
        };
        values.extend(items);
        Ok(())
    }

    /// `('storage', <storage class>, key, location, numel)`.
    fn storage(&self, pid: usize) -> Result<Object> {
        let fail = || bad("a persistent id that is not one of torch's storages");
        let Object::Tuple(t) = &self.arena[pid] else {
            return Err(fail());
        };
        let [tag, class, key, _location, numel] = t[..] else {
            return Err(fail());
        };
        match (&self.arena[tag], &self.arena[class], &self.arena[key]) {
            (Object::Str(s), Object::Global(Global::Storage(dtype)), Object::Str(key))
                if s == "storage" =>
            {
                Ok(Object::Storage(StorageRef {
                    key: key.clone(),
                    dtype: *dtype,
                    numel: self.usize(numel, "a storage's size")? as u64,
                }))
            }
            _ => Err(fail()),
        }
    }

    fn reduce(&self, callable: usize, args: usize) -> Result<Object> {
        let Object::Global(g) = self.arena[callable] else {
            return Err(bad("a call of something that is not a known function"));
        };
        let Object::Tuple(args) = &self.arena[args] else {
            return Err(bad("a call whose arguments are not a tuple"));
        };
        match g {
            Global::OrderedDict if args.is_empty() => Ok(Object::Dict(Vec::new())),
            Global::RebuildTensor if (6..=7).contains(&args.len()) => {
                let Object::Storage(storage) = &self.arena[args[0]] else {
                    return Err(bad("a tensor rebuilt from something that is not a storage"));
                };
                let offset = self.usize(args[1], "a tensor's storage offset")? as u64;
                let shape = self.ints(args[2], "a tensor's size")?;
                let stride = self.ints(args[3], "a tensor's stride")?;
                if shape.len() != stride.len() {
                    return Err(bad("a tensor's size and stride differ in length"));
                }
                Ok(Object::Tensor(TensorRef {
                    storage: storage.clone(),
                    offset,
                    shape,
                    stride,
                }))
            }
            Global::RebuildParameter if (3..=4).contains(&args.len()) => {
                match &self.arena[args[0]] {
                    t @ Object::Tensor(_) => Ok(t.clone()),
                    _ => Err(bad(
                        "a parameter rebuilt from something that is not a tensor",
                    )),
                }
            }
            other => Err(bad(format!(
                "{other:?} called with {} arguments, which torch.save does not write",
                args.len()
            ))),
        }
    }

    /// Runs to `STOP` and returns the object it leaves.
    fn run(&mut self) -> Result<usize> {
        loop {
            let at = self.at;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let v = self.u8()?;
                    if !(2..=5).contains(&v) {
                        return Err(bad(format!("pickle protocol {v}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = global(module, name)?;
                    self.push(Object::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Object::Str(m), Object::Str(n)) = (&self.arena[module], &self.arena[name])
                    else {
                        return Err(bad("a global named by something other than strings"));
                    };
                    let g = global(m, n)?;
                    self.push(Object::Global(g));
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.u8()? as u32,
                        b'r' => self.u32()?,
                        _ => self.memo.len() as u32,
                    };
                    let top = self.top()?;
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let id = *self
                        .memo
                        .get(&key)
                        .ok_or_else(|| bad(format!("memo entry {key} is read before it is set")))?;
                    self.stack.push(id);
                }
                b'}' => self.push(Object::Dict(Vec::new())),
                b']' => self.push(Object::List(Vec::new())),
                b')' => self.tuple(Vec::new()),
                b'(' => self.marks.push(self.stack.len()),
                b't' => {
                    let items = self.pop_mark()?;
                    self.tuple(items);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                    items.reverse();
                    self.tuple(items);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Object::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Object::Dict(Vec::new()));
                    let dict = self.top()?;
                    self.set_items(dict, items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.append(list, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.append(list, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, items)?;
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    self.text(n)?;
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    self.text(n)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    self.text(n)?;
                }
                b'B' | b'C' => {
                    let n = if op == b'B' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    self.take(n)?;
                    self.push(Object::Bytes);
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    self.push(Object::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Object::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Object::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(bad(format!("an integer of {n} bytes")));
                    }
                    let bytes = self.take(n)?;
                    // Two's complement, little-endian, sign-extended from its last byte.
                    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut full = [fill; 8];
                    full[..n].copy_from_slice(bytes);
                    self.push(Object::Int(i64::from_le_bytes(full)));
                }
                b'N' => self.push(Object::None),
                0x88 => self.push(Object::Bool(true)),
                0x89 => self.push(Object::Bool(false)),
                b'G' => {
                    self.take(8)?;
                    self.push(Object::Float);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.storage(pid)?;
                    self.push(storage);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let made = self.reduce(callable, args)?;
                    self.push(made);
                }
                b'b' => {
                    // An object's state: the `_metadata` a state dict carries as an attribute.
                    self.pop()?;
                    if !matches!(self.arena[self.top()?], Object::Dict(_)) {
                        return Err(bad("state set on an object that is not a dictionary"));
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                other => {
                    return Err(bad(format!(
                        "instruction 0x{other:02x} at byte {at} is not one that torch.save writes"
                    )))
                }
            }
        }
    }
}

/// The tensors of a pickled state dict, in the dictionary's order; entries that are not tensors
/// under a string key are left out.
pub fn state_dict(pkl: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    if pkl.len() as u64 > MAX_PICKLE {
        return Err(bad(format!("{} bytes is too large", pkl.len())));
    }
    let mut m = Machine::new(pkl);
    let root = m.run()?;
    let Object::Dict(entries) = &m.arena[root] else {
        return Err(bad(
            "it holds no dictionary of tensors (is it a state dict?)",
        ));
    };
    let mut out: Vec<(String, TensorRef)> = Vec::new();
    for &(k, v) in entries {
        if let (Object::Str(key), Object::Tensor(t)) = (&m.arena[k], &m.arena[v]) {
            out.retain(|(seen, _)| seen != key); // a repeated key replaces, as in Python
            out.push((key.clone(), t.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{'w': _rebuild_tensor_v2(persid(('storage', FloatStorage, '0', 'cpu', 6)), 0, (2, 3),
    /// (3, 1), False, OrderedDict())}`, written opcode by opcode as torch.save writes it.
    fn one_tensor() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'w'];
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000");
        p.extend(b"X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend(b"K\x00K\x02K\x03\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)Rt");
        p.extend(b"Ru.");
        p
    }

    #[test]
    fn reads_a_hand_written_state_dict() {
        let sd = state_dict(&one_tensor()).unwrap();
        assert_eq!(sd.len(), 1);
        let (key, t) = &sd[0];
        assert_eq!(key, "w");
        assert_eq!(t.storage.key, "0");
        assert_eq!(t.storage.dtype, Dtype::F32);
        assert_eq!(t.storage.numel, 6);
        assert_eq!(
            (t.offset, t.shape.clone(), t.stride.clone()),
            (0, vec![2, 3], vec![3, 1])
        );
    }

    #[test]
    fn long1_is_signed_little_endian() {
        for (bytes, want) in [
            (&[][..], 0i64),
            (&[0xff], -1),
            (&[0x00, 0x01], 256),
            (&[0xff, 0x7f], 32767),
            (&[0x00, 0x80], -32768),
        ] {
            let mut p = vec![0x80, 2, 0x8a, bytes.len() as u8];
            p.extend(bytes);
            p.push(b'.');
            let mut m = Machine::new(&p);
            let id = m.run().unwrap();
            assert_eq!(m.int(id, "x").unwrap(), want, "{bytes:?}");
        }
    }

    #[test]
    fn refuses_what_a_state_dict_does_not_hold() {
        let err = |p: &[u8]| state_dict(p).unwrap_err().to_string();
        let e = err(b"\x80\x02cos\nsystem\n.");
        assert!(
            e.contains("`os.system`") && e.contains("nothing in the file is run"),
            "{e}"
        );
        let e = err(b"\x80\x02I1\n.");
        assert!(e.contains("0x49") && e.contains("byte 2"), "{e}");
        let e = err(b"\x80\x02X\xff\x00\x00\x00ab");
        assert!(e.contains("ends inside"), "{e}");
        let e = err(b"\x80\x02h\x05.");
        assert!(e.contains("memo entry 5"), "{e}");
        let e = err(b"\x80\x02K\x01.");
        assert!(e.contains("no dictionary"), "{e}");
        let e = err(b"\x80\x02(t0t.");
        assert!(e.contains("no mark"), "{e}");
        // A persistent id that is not a storage.
        let e = err(b"\x80\x02K\x01Q.");
        assert!(e.contains("persistent id"), "{e}");
        // The stride's TUPLE2 made a TUPLE3: the tensor is rebuilt with five arguments.
        let mut bad = one_tensor();
        let at = bad.windows(3).position(|w| w == b"\x03K\x01").unwrap();
        bad[at + 3] = 0x87;
        let e = err(&bad);
        assert!(e.contains("5 arguments"), "{e}");
    }

    #[test]
    fn shared_objects_cost_one_index() {
        // A list memoised once and fetched a hundred thousand times into one tuple.
        let mut p = vec![0x80, 2, b']', b'q', 0, b'('];
        for _ in 0..100_000 {
            p.extend([b'h', 0]);
        }
        p.extend([b't', b'.']);
        let mut m = Machine::new(&p);
        m.run().unwrap();
        assert_eq!(m.arena.len(), 2);
    }
}
