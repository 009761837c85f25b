//! xls encryption ([MS-XLS] §2.2.10, [MS-OFFCRYPTO] §2.3.6): the FILEPASS record names XOR
//! obfuscation, RC4 encryption or RC4 CryptoAPI encryption. Excel encrypts with the password
//! "VelvetSweatshop" when a workbook's structure is protected without a password to open, and
//! opens such files without asking; so does this reader. Any other password (and XOR
//! obfuscation, which needs the real password too) is `Encrypted`, with the message to save the
//! file without one.
//!
//! Written here with the RustCrypto primitives (`rc4`, `md-5`, `sha1`): the one Rust crate for
//! Office decryption (`office-crypto`) covers OOXML packages and Word's binary format, not
//! MS-XLS, whose Workbook stream is encrypted record by record (record headers, BOF, FILEPASS
//! and a few others left in clear, the rest enciphered by their position in the stream, with a
//! new key every 1,024 bytes).
//!
//! [MS-XLS]: https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-xls/
//! [MS-OFFCRYPTO]: https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-offcrypto/

use md5::{Digest, Md5};
use rc4::{consts::U16, KeyInit, Rc4, StreamCipher};
use sha1::Sha1;

use crate::workbook::grid::ReadError;

use super::xls_records::{u16_at, u32_at, Records};

/// The password Excel uses when the user gave none.
pub const DEFAULT_PASSWORD: &str = "VelvetSweatshop";
const BLOCK: usize = 1024;

/// How a FILEPASS record says the stream is enciphered.
enum Method {
    /// RC4 with MD5 key derivation: the truncated hash of password and salt.
    Rc4 { key_base: [u8; 5] },
    /// RC4 with SHA-1 (CryptoAPI): H0 and the key length in bytes.
    CryptoApi { h0: [u8; 20], key_bytes: usize },
}

fn utf16(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

impl Method {
    fn block_key(&self, block: u32) -> [u8; 16] {
        let mut key = [0u8; 16];
        match self {
            Method::Rc4 { key_base } => {
                let mut h = Md5::new();
                h.update(key_base);
                h.update(block.to_le_bytes());
                key.copy_from_slice(&h.finalize());
            }
            Method::CryptoApi { h0, key_bytes } => {
                let mut h = Sha1::new();
                h.update(h0);
                h.update(block.to_le_bytes());
                let digest = h.finalize();
                // A 40-bit key is used as 128 bits with the rest zero, as CryptoAPI does.
                let n = (*key_bytes).clamp(5, 16);
                key[..n].copy_from_slice(&digest[..n]);
            }
        }
        key
    }

    fn cipher(&self, block: u32) -> Rc4<U16> {
        Rc4::<U16>::new(&self.block_key(block).into())
    }
}

/// Reads the FILEPASS data and tries Excel's default password. `Ok(Some)` with the way to
/// decipher, `Ok(None)` for a real password (or XOR obfuscation).
fn method(filepass: &[u8]) -> Result<Option<Method>, ReadError> {
    let corrupt = || ReadError::Corrupt("the xls file's encryption record is damaged".into());
    match (u16_at(filepass, 0), u16_at(filepass, 2), u16_at(filepass, 4)) {
        (Some(0), _, _) => Ok(None),
        (Some(1), Some(1), Some(1)) => {
            let salt = filepass.get(6..22).ok_or_else(corrupt)?;
            let verifier = filepass.get(22..38).ok_or_else(corrupt)?;
            let hash = filepass.get(38..54).ok_or_else(corrupt)?;
            let h0 = Md5::digest(utf16(DEFAULT_PASSWORD));
            let mut buf = Vec::with_capacity(16 * 21);
            for _ in 0..16 {
                buf.extend_from_slice(&h0[..5]);
                buf.extend_from_slice(salt);
            }
            let mut key_base = [0u8; 5];
            key_base.copy_from_slice(&Md5::digest(&buf)[..5]);
            let m = Method::Rc4 { key_base };
            let (mut v, mut h) = (verifier.to_vec(), hash.to_vec());
            let mut rc4 = m.cipher(0);
            rc4.apply_keystream(&mut v);
            rc4.apply_keystream(&mut h);
            Ok((Md5::digest(&v)[..] == h[..]).then_some(m))
        }
        (Some(1), Some(2..=4), Some(2)) => {
            let header_size = u32_at(filepass, 10).ok_or_else(corrupt)? as usize;
            let header =
                filepass.get(14..14usize.saturating_add(header_size)).ok_or_else(corrupt)?;
            let key_bits = u32_at(header, 16).ok_or_else(corrupt)?;
            let key_bytes = if key_bits == 0 { 5 } else { (key_bits / 8) as usize };
            let v = 14 + header_size;
            let salt_size = u32_at(filepass, v).ok_or_else(corrupt)? as usize;
            let salt = filepass.get(v + 4..v + 4 + salt_size.min(16)).ok_or_else(corrupt)?;
            let at = v + 4 + salt_size.min(16);
            let verifier = filepass.get(at..at + 16).ok_or_else(corrupt)?;
            let hash = filepass.get(at + 20..at + 40).ok_or_else(corrupt)?;
            let mut h = Sha1::new();
            h.update(salt);
            h.update(utf16(DEFAULT_PASSWORD));
            let mut h0 = [0u8; 20];
            h0.copy_from_slice(&h.finalize());
            let m = Method::CryptoApi { h0, key_bytes };
            let (mut v, mut hv) = (verifier.to_vec(), hash.to_vec());
            let mut rc4 = m.cipher(0);
            rc4.apply_keystream(&mut v);
            rc4.apply_keystream(&mut hv);
            Ok((Sha1::digest(&v)[..] == hv[..]).then_some(m))
        }
        _ => Ok(None),
    }
}

/// Records left in clear ([MS-XLS] §2.2.10): BOF, FILEPASS, USREXCL, FILELOCK, INTERFACEHDR,
/// RRDINFO, RRDHEAD.
const CLEAR: [u16; 7] = [0x0809, 0x002F, 0x0194, 0x0195, 0x00E1, 0x0196, 0x0138];
const BOUNDSHEET: u16 = 0x0085;

/// The stream deciphered with Excel's default password, or `Encrypted` when the file has a
/// password of its own. `filepass` is the FILEPASS record's data and `after` where the record
/// after it starts.
pub fn decrypt(stream: &[u8], filepass: &[u8], after: usize) -> Result<Vec<u8>, ReadError> {
    let Some(m) = method(filepass)? else { return Err(ReadError::Encrypted) };
    let mut plain = stream.to_vec();
    // The keystream runs over every byte from the start of its block, headers included; one
    // block of it is made at a time.
    let mut block = usize::MAX;
    let mut keystream = [0u8; BLOCK];
    let mut apply = |plain: &mut [u8], from: usize, to: usize| {
        for (i, byte) in plain.iter_mut().enumerate().take(to).skip(from) {
            if i / BLOCK != block {
                block = i / BLOCK;
                keystream = [0u8; BLOCK];
                m.cipher(block as u32).apply_keystream(&mut keystream);
            }
            *byte ^= keystream[i % BLOCK];
        }
    };
    for record in Records::new(stream, after) {
        if CLEAR.contains(&record.kind) {
            continue;
        }
        let start = record.offset + 4;
        let end = start + record.data.len();
        // A BOUNDSHEET's stream offset stays in clear so sheets can be found unenciphered.
        let clear_head = if record.kind == BOUNDSHEET { 4 } else { 0 };
        apply(&mut plain, (start + clear_head).min(end), end);
    }
    Ok(plain)
}
