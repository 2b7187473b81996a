//! The parts of the ZIP format (PKWARE's APPNOTE.TXT, sections 4.3 and 4.5) that PyTorch's
//! archives use, read from byte ranges: the end-of-central-directory records (ZIP64 included:
//! torch always writes them), the central directory, and local headers. Entries must be stored,
//! not compressed: torch writes them so, and that is what lets a tensor be read in place.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{Error, Result};

const EOCD: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD: u32 = 0x0606_4b50;
pub(super) const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL: u32 = 0x0403_4b50;
pub(super) const LOCAL_LEN: u64 = 30;

/// How much of the end of the file can hold the end records: the fixed record, a comment of at
/// most 65,535 bytes, the ZIP64 locator and the ZIP64 record without extensible data.
pub(super) const TAIL: u64 = (EOCD_LEN + 0xffff + ZIP64_LOCATOR_LEN) as u64 + ZIP64_EOCD_LEN;

/// The largest central directory read (a checkpoint of a few hundred tensors has tens of kB).
const MAX_DIRECTORY: u64 = 64 << 20;

pub(super) fn bad(m: impl std::fmt::Display) -> Error {
    Error::Weights(format!("not a readable PyTorch checkpoint: {m}"))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Where the central directory is, from the end records.
#[derive(Clone, Debug)]
pub(super) struct Directory {
    pub entries: u64,
    pub range: Range<u64>,
}

/// What the end of the file says: the directory, or that the ZIP64 record at this offset must
/// be read first.
pub(super) enum End {
    Directory(Directory),
    Zip64At(u64),
}

/// Finds the end-of-central-directory record in `tail` (the file's last bytes, starting at
/// `tail_start`) and what it points to.
pub(super) fn read_end(tail: &[u8], tail_start: u64, file_len: u64) -> Result<End> {
    // The record ends the file, followed only by its comment: scan back for a signature whose
    // comment length fits exactly.
    let found = (0..=tail.len().saturating_sub(EOCD_LEN)).rev().find(|&at| {
        u32_at(tail, at) == EOCD && at + EOCD_LEN + u16_at(tail, at + 20) as usize == tail.len()
    });
    let Some(at) = found else {
        return Err(bad(
            "no end-of-central-directory record (is the file complete?)",
        ));
    };
    let eocd = &tail[at..];
    if u16_at(eocd, 4) != 0 || u16_at(eocd, 6) != 0 {
        return Err(bad("a multi-part archive"));
    }
    let entries = u16_at(eocd, 10) as u64;
    let size = u32_at(eocd, 12) as u64;
    let offset = u32_at(eocd, 16) as u64;
    if at >= ZIP64_LOCATOR_LEN && u32_at(tail, at - ZIP64_LOCATOR_LEN) == ZIP64_LOCATOR {
        let locator = &tail[at - ZIP64_LOCATOR_LEN..at];
        let record = u64_at(locator, 8);
        if u32_at(locator, 4) != 0 || u32_at(locator, 16) > 1 {
            return Err(bad("a multi-part archive"));
        }
        let locator_at = tail_start + (at - ZIP64_LOCATOR_LEN) as u64;
        if record
            .checked_add(ZIP64_EOCD_LEN)
            .is_none_or(|end| end > locator_at)
        {
            return Err(bad("the ZIP64 end record lies outside the file"));
        }
        return Ok(End::Zip64At(record));
    }
    directory(entries, size, offset, tail_start + at as u64, file_len)
}

/// The directory from a ZIP64 end record (`ZIP64_EOCD_LEN` bytes at `at`).
pub(super) fn read_zip64_end(record: &[u8], at: u64, file_len: u64) -> Result<Directory> {
    if record.len() < ZIP64_EOCD_LEN as usize || u32_at(record, 0) != ZIP64_EOCD {
        return Err(bad("the ZIP64 end record is damaged"));
    }
    if u32_at(record, 16) != 0 || u32_at(record, 20) != 0 {
        return Err(bad("a multi-part archive"));
    }
    match directory(
        u64_at(record, 32),
        u64_at(record, 40),
        u64_at(record, 48),
        at,
        file_len,
    )? {
        End::Directory(d) => Ok(d),
        End::Zip64At(_) => unreachable!("directory() never asks for a ZIP64 record"),
    }
}

fn directory(entries: u64, size: u64, offset: u64, end_at: u64, file_len: u64) -> Result<End> {
    let end = offset
        .checked_add(size)
        .filter(|&e| e <= end_at && e <= file_len);
    let Some(end) = end else {
        return Err(bad(
            "the central directory lies outside the file (is it complete?)",
        ));
    };
    if size > MAX_DIRECTORY {
        return Err(bad(format!("a central directory of {size} bytes")));
    }
    if entries > size / CENTRAL_LEN as u64 {
        return Err(bad(format!(
            "{entries} entries cannot fit in {size} bytes of directory"
        )));
    }
    Ok(End::Directory(Directory {
        entries,
        range: offset..end,
    }))
}

/// One file of the archive, as the central directory describes it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ZipEntry {
    pub name: String,
    /// Where its local header starts.
    pub header: u64,
    pub size: u64,
    pub crc32: u32,
}

/// Every entry of the central directory, by name. Compressed or encrypted entries are refused:
/// a tensor is read in place, so its bytes must be stored as they are.
pub(super) fn read_directory(
    dir: &[u8],
    expected: u64,
    file_len: u64,
) -> Result<HashMap<String, ZipEntry>> {
    let mut out = HashMap::new();
    let mut at = 0usize;
    for _ in 0..expected {
        let fixed = dir
            .get(at..at + CENTRAL_LEN)
            .filter(|f| u32_at(f, 0) == CENTRAL);
        let Some(fixed) = fixed else {
            return Err(bad("the central directory is damaged"));
        };
        let flags = u16_at(fixed, 8);
        let method = u16_at(fixed, 10);
        let crc32 = u32_at(fixed, 16);
        let mut compressed = u32_at(fixed, 20) as u64;
        let mut size = u32_at(fixed, 24) as u64;
        let (name_len, extra_len, comment_len) = (
            u16_at(fixed, 28) as usize,
            u16_at(fixed, 30) as usize,
            u16_at(fixed, 32) as usize,
        );
        let mut header = u32_at(fixed, 42) as u64;
        let name_at = at + CENTRAL_LEN;
        let Some(rest) = dir.get(name_at..name_at + name_len + extra_len) else {
            return Err(bad("the central directory is cut short"));
        };
        let name = String::from_utf8_lossy(&rest[..name_len]).into_owned();
        // ZIP64 extended information (APPNOTE 4.5.3): only the fields whose 32-bit value is
        // saturated appear, in this order.
        let mut extra = &rest[name_len..];
        while extra.len() >= 4 {
            let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
            let Some(body) = extra.get(4..4 + len) else {
                return Err(bad(format!("`{name}`: a damaged extra field")));
            };
            if id == 1 {
                let mut fields = body.chunks_exact(8).map(|c| u64_at(c, 0));
                for value in [&mut size, &mut compressed, &mut header] {
                    if *value == 0xffff_ffff {
                        *value = fields
                            .next()
                            .ok_or_else(|| bad(format!("`{name}`: a short ZIP64 field")))?;
                    }
                }
            }
            extra = &extra[4 + len..];
        }
        if flags & 1 != 0 {
            return Err(bad(format!("`{name}` is encrypted")));
        }
        if method != 0 || compressed != size {
            return Err(bad(format!(
                "`{name}` is compressed (method {method}); PyTorch stores its entries as they are, \
                 so this archive was rewritten: save it again with torch.save"
            )));
        }
        if header
            .checked_add(LOCAL_LEN + size)
            .is_none_or(|e| e > file_len)
        {
            return Err(bad(format!(
                "`{name}` lies outside the file (is it complete?)"
            )));
        }
        at = name_at + name_len + extra_len + comment_len;
        out.insert(
            name.clone(),
            ZipEntry {
                name,
                header,
                size,
                crc32,
            },
        );
    }
    Ok(out)
}

/// Where an entry's data starts, from the first bytes of its local header (at least
/// `LOCAL_LEN + name length`), as an offset from the header.
pub(super) fn data_offset(entry: &ZipEntry, local: &[u8]) -> Result<u64> {
    let ok = local.len() >= LOCAL_LEN as usize + entry.name.len()
        && u32_at(local, 0) == LOCAL
        && u16_at(local, 8) == 0
        && u16_at(local, 26) as usize == entry.name.len()
        && &local[LOCAL_LEN as usize..LOCAL_LEN as usize + entry.name.len()]
            == entry.name.as_bytes();
    if !ok {
        return Err(bad(format!(
            "the local header of `{}` does not match the directory (is the file damaged?)",
            entry.name
        )));
    }
    Ok(LOCAL_LEN + entry.name.len() as u64 + u16_at(local, 28) as u64)
}
