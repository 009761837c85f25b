//! A read-only, forgiving reader of OLE2 compound files ([MS-CFB]), the container of xls files
//! and of encrypted OOXML packages. Written here rather than taken from the `cfb` crate, which
//! refuses files Excel and LibreOffice open: SheetJS and older writers leave FAT sectors
//! uncounted in the header, end the file inside its last sector, or list more FAT entries than
//! the file has sectors, and `cfb` calls each of these "Malformed FAT". This reader takes what
//! the file really holds: sector chains are followed only through sectors that exist, every
//! chain walk is bounded by the number of sectors (so a loop in the FAT cannot hang it), a
//! partial last sector reads as zero-padded, and a stream shorter than its directory entry
//! says is read as far as it goes. Nothing is allocated from a declared size: every buffer is
//! at most the file's own length.
//!
//! [MS-CFB]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-cfb/

use std::collections::HashSet;

use crate::workbook::grid::ReadError;

pub const MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Sector numbers at or above this are markers (free, end of chain, FAT, DIFAT), not sectors.
const MAX_REGULAR: u32 = 0xFFFF_FFFA;
const NO_STREAM: u32 = 0xFFFF_FFFF;
const MINI_SECTOR: usize = 64;
const MINI_CUTOFF: u64 = 4096;

/// One directory entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: u8,
    left: u32,
    right: u32,
    child: u32,
    start: u32,
    size: u64,
}

/// An opened compound file.
pub struct Compound<'a> {
    bytes: &'a [u8],
    sector: usize,
    fat: Vec<u32>,
    mini_fat: Vec<u32>,
    entries: Vec<Entry>,
    mini_stream: Vec<u8>,
}

fn corrupt(why: &str) -> ReadError {
    ReadError::Corrupt(format!("not a valid Office file: {why}"))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |x| u16::from_le_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(NO_STREAM, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

impl<'a> Compound<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Compound<'a>, ReadError> {
        if bytes.len() < 512 || !bytes.starts_with(MAGIC) {
            return Err(corrupt("the file ends inside its header"));
        }
        let sector = match u16_at(bytes, 30) {
            9 => 512,
            12 => 4096,
            other => return Err(corrupt(&format!("sector size 2^{other}"))),
        };
        let mut file = Compound {
            bytes,
            sector,
            fat: Vec::new(),
            mini_fat: Vec::new(),
            entries: Vec::new(),
            mini_stream: Vec::new(),
        };
        file.fat = file.read_fat();
        let directory = file.chain_bytes(u32_at(bytes, 48));
        file.entries = directory.chunks_exact(128).map(entry).collect();
        if file.entries.is_empty() {
            return Err(corrupt("it has no directory"));
        }
        let mini_fat = file.chain_bytes(u32_at(bytes, 60));
        file.mini_fat = mini_fat.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        let root = file.entries[0].clone();
        let mut mini = file.chain_bytes(root.start);
        mini.truncate(usize::try_from(root.size).unwrap_or(usize::MAX));
        file.mini_stream = mini;
        Ok(file)
    }

    /// Sectors the file really has (a partial last sector counts).
    fn sector_count(&self) -> usize {
        (self.bytes.len().saturating_sub(self.sector)).div_ceil(self.sector)
    }

    /// One sector's bytes, zero-padded when the file ends inside it.
    fn sector_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let start = (id as usize).saturating_add(1).saturating_mul(self.sector);
        let end = start.saturating_add(self.sector);
        let have = self.bytes.get(start..end.min(self.bytes.len())).unwrap_or(&[]);
        out.extend_from_slice(have);
        out.resize(out.len() + (self.sector - have.len()), 0);
    }

    /// The FAT: every FAT sector the DIFAT (header and chain) lists that exists in the file,
    /// whatever the header's count of FAT sectors says.
    fn read_fat(&self) -> Vec<u32> {
        let count = self.sector_count();
        let mut fat_sectors: Vec<u32> = (0..109).map(|i| u32_at(self.bytes, 76 + 4 * i)).collect();
        let mut next = u32_at(self.bytes, 68);
        let mut seen = HashSet::new();
        let per_sector = self.sector / 4;
        while next <= MAX_REGULAR && (next as usize) < count && seen.insert(next) {
            let mut block = Vec::with_capacity(self.sector);
            self.sector_bytes(next, &mut block);
            fat_sectors.extend((0..per_sector - 1).map(|i| u32_at(&block, 4 * i)));
            next = u32_at(&block, self.sector - 4);
        }
        let mut fat = Vec::new();
        let mut used = HashSet::new();
        for id in fat_sectors {
            if id <= MAX_REGULAR && (id as usize) < count && used.insert(id) {
                let mut block = Vec::with_capacity(self.sector);
                self.sector_bytes(id, &mut block);
                fat.extend(block.chunks_exact(4).map(|c| u32_at(c, 0)));
            }
        }
        fat
    }

    /// The bytes of a regular sector chain, stopping at its end, at a sector the file does not
    /// have, or where the chain would loop.
    fn chain_bytes(&self, start: u32) -> Vec<u8> {
        let count = self.sector_count();
        let mut out = Vec::new();
        let mut id = start;
        let mut steps = 0usize;
        while id <= MAX_REGULAR && (id as usize) < count && steps < count {
            self.sector_bytes(id, &mut out);
            id = self.fat.get(id as usize).copied().unwrap_or(NO_STREAM);
            steps += 1;
        }
        out
    }

    fn mini_chain_bytes(&self, start: u32, size: usize) -> Vec<u8> {
        let count = self.mini_stream.len() / MINI_SECTOR;
        let mut out = Vec::new();
        let mut id = start;
        let mut steps = 0usize;
        while id <= MAX_REGULAR && (id as usize) < count && steps < count && out.len() < size {
            let at = id as usize * MINI_SECTOR;
            out.extend_from_slice(self.mini_stream.get(at..at + MINI_SECTOR).unwrap_or(&[]));
            id = self.mini_fat.get(id as usize).copied().unwrap_or(NO_STREAM);
            steps += 1;
        }
        out
    }

    /// The indexes of the entries directly inside the root storage.
    fn root_children(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![self.entries[0].child];
        while let Some(id) = stack.pop() {
            let i = id as usize;
            if id == NO_STREAM || i >= self.entries.len() || !seen.insert(i) {
                continue;
            }
            out.push(i);
            stack.push(self.entries[i].left);
            stack.push(self.entries[i].right);
        }
        out
    }

    /// True when the root storage has a stream or storage of this name (any case).
    pub fn exists(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.root_children().into_iter().find(|&i| self.entries[i].name.eq_ignore_ascii_case(name))
    }

    /// The whole of a stream in the root storage, as far as the file holds it.
    pub fn stream(&self, name: &str) -> Option<Vec<u8>> {
        let entry = &self.entries[self.find(name)?];
        if entry.kind != 2 {
            return None;
        }
        // Version 3 files keep only the low 32 bits of a size; some writers leave junk above.
        let size = match self.sector {
            512 => entry.size & 0xFFFF_FFFF,
            _ => entry.size,
        };
        let want = usize::try_from(size).unwrap_or(usize::MAX).min(self.bytes.len());
        let mut out = if size < MINI_CUTOFF {
            self.mini_chain_bytes(entry.start, want)
        } else {
            self.chain_bytes(entry.start)
        };
        out.truncate(want);
        Some(out)
    }
}

fn entry(raw: &[u8]) -> Entry {
    let name_len = usize::from(u16_at(raw, 64)).min(64);
    let units: Vec<u16> = raw
        .get(..name_len)
        .unwrap_or(&[])
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Entry {
        name: String::from_utf16_lossy(&units),
        kind: raw.get(66).copied().unwrap_or(0),
        left: u32_at(raw, 68),
        right: u32_at(raw, 72),
        child: u32_at(raw, 76),
        start: u32_at(raw, 116),
        size: raw
            .get(120..128)
            .map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 3 compound file with one stream `name` of `data` (≥ 4096 bytes, so it lives in
    /// regular sectors), its FAT in sector 0, the directory in sector 1, the data from sector 2.
    fn compound(name: &str, data: &[u8], fat_count_in_header: u32) -> Vec<u8> {
        let sectors = data.len().div_ceil(512);
        let mut header = MAGIC.to_vec();
        header.resize(512, 0);
        header[24..26].copy_from_slice(&0x3Eu16.to_le_bytes());
        header[26..28].copy_from_slice(&3u16.to_le_bytes());
        header[28..30].copy_from_slice(&0xFFFEu16.to_le_bytes());
        header[30..32].copy_from_slice(&9u16.to_le_bytes());
        header[32..34].copy_from_slice(&6u16.to_le_bytes());
        header[44..48].copy_from_slice(&fat_count_in_header.to_le_bytes());
        header[48..52].copy_from_slice(&1u32.to_le_bytes());
        header[56..60].copy_from_slice(&4096u32.to_le_bytes());
        header[60..64].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        header[68..72].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        for i in 0..109 {
            let v: u32 = if i == 0 { 0 } else { NO_STREAM };
            header[76 + 4 * i..80 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let mut fat = vec![0xFFFF_FFFDu32, 0xFFFF_FFFE];
        for i in 0..sectors {
            fat.push(if i + 1 == sectors { 0xFFFF_FFFE } else { (i + 3) as u32 });
        }
        fat.resize(128, NO_STREAM);
        let mut out = header;
        out.extend(fat.iter().flat_map(|v| v.to_le_bytes()));
        let dir_entry = |name: &str, kind: u8, child: u32, start: u32, size: u64| {
            let mut e = vec![0u8; 128];
            let units: Vec<u8> =
                name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
            e[..units.len()].copy_from_slice(&units);
            e[64..66].copy_from_slice(&(units.len() as u16).to_le_bytes());
            e[66] = kind;
            e[68..72].copy_from_slice(&NO_STREAM.to_le_bytes());
            e[72..76].copy_from_slice(&NO_STREAM.to_le_bytes());
            e[76..80].copy_from_slice(&child.to_le_bytes());
            e[116..120].copy_from_slice(&start.to_le_bytes());
            e[120..128].copy_from_slice(&size.to_le_bytes());
            e
        };
        out.extend(dir_entry("Root Entry", 5, 1, 0xFFFF_FFFE, 0));
        out.extend(dir_entry(name, 2, NO_STREAM, 2, data.len() as u64));
        out.resize(512 * 3, 0);
        out.extend(data);
        out
    }

    #[test]
    fn a_stream_reads_back_whole() {
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let file = compound("Workbook", &data, 1);
        let cfb = Compound::open(&file).expect("opens");
        assert!(cfb.exists("workbook"));
        assert_eq!(cfb.stream("Workbook"), Some(data));
    }

    #[test]
    fn a_wrong_fat_count_and_a_file_ending_inside_a_sector_are_tolerated() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut file = compound("Workbook", &data, 0);
        let stream = Compound::open(&file).expect("opens").stream("Workbook");
        assert_eq!(stream.as_deref(), Some(&data[..]));
        // The data's last sector cut short, as some writers leave it.
        file.truncate(file.len() - 100);
        let cfb = Compound::open(&file).expect("opens");
        let cut = cfb.stream("Workbook").expect("still read");
        assert_eq!(&cut[..4900], &data[..4900], "what the file holds is read");
        assert!(cut[4900..].iter().all(|&b| b == 0), "the missing end reads as zeros");
    }

    #[test]
    fn a_fat_that_loops_ends_the_chain() {
        let data = vec![1u8; 5000];
        let mut file = compound("Workbook", &data, 1);
        // FAT entry of sector 3 points back to sector 2.
        file[512 + 4 * 3..512 + 4 * 4].copy_from_slice(&2u32.to_le_bytes());
        let cfb = Compound::open(&file).expect("opens");
        assert!(cfb.stream("Workbook").is_some_and(|s| s.len() <= file.len()));
    }
}
