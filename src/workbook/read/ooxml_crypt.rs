//! Encrypted Office packages ([MS-OFFCRYPTO] §2.3.4.10 agile encryption, what Excel 2010 and
//! later write): an OLE2 file holding `EncryptionInfo` and `EncryptedPackage`. Only Excel's
//! built-in default password ("VelvetSweatshop", see `xls_crypt`) is tried: a workbook it
//! opens is deciphered and read as the xlsx inside; any other password, and the older
//! "standard" encryption of Excel 2007, is `Encrypted`, answered with "save it without a
//! password".
//!
//! Written here with RustCrypto's `aes`, `cbc` and `sha2` rather than with `office-crypto`, the
//! one crate for this: it is a single-author crate that pulls in a second quick-xml and more
//! besides, reads the whole declared package size without a bound, and has no way to stop a
//! key derivation whose spin count a hostile file sets to millions; this file checks the
//! cancel flag while it spins and never allocates more than the stream holds.
//!
//! [MS-OFFCRYPTO]: https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-offcrypto/

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
use base64::Engine;
use quick_xml::events::Event;
use sha2::{Digest, Sha512};

use crate::workbook::grid::ReadError;

use super::budget::Budget;
use super::cfb::Compound;
use super::xls_crypt::DEFAULT_PASSWORD;
use super::xml;

const KEY_BLOCK: [u8; 8] = [0x14, 0x6e, 0x0b, 0xe7, 0xab, 0xac, 0xd0, 0xd6];
const VERIFIER_INPUT_BLOCK: [u8; 8] = [0xfe, 0xa7, 0xd2, 0x76, 0x3b, 0x4b, 0x9e, 0x79];
const VERIFIER_VALUE_BLOCK: [u8; 8] = [0xd7, 0xaa, 0x0f, 0x6d, 0x30, 0x61, 0x34, 0x4e];
/// The most iterations [MS-OFFCRYPTO] allows.
const MAX_SPIN: u32 = 10_000_000;
const SEGMENT: usize = 4096;

/// What the `EncryptionInfo` XML says.
#[derive(Default)]
struct Info {
    key_salt: Vec<u8>,
    key_bits: usize,
    block_size: usize,
    hash_ok: bool,
    spin: u32,
    password_salt: Vec<u8>,
    password_bits: usize,
    encrypted_key: Vec<u8>,
    verifier_input: Vec<u8>,
    verifier_value: Vec<u8>,
}

fn b64(v: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.trim()).unwrap_or_default()
}

fn parse(xml_bytes: &[u8]) -> Info {
    let mut info = Info::default();
    let mut reader = xml::reader(xml_bytes);
    let mut buf = Vec::new();
    while let Ok(event) = reader.read_event_into(&mut buf) {
        match &event {
            Event::Start(e) | Event::Empty(e) => match xml::local(e) {
                "keyData" => xml::each_attr(e, |_, name, v| match name {
                    "saltValue" => info.key_salt = b64(v),
                    "keyBits" => info.key_bits = v.parse().unwrap_or(0),
                    "blockSize" => info.block_size = v.parse().unwrap_or(0),
                    "hashAlgorithm" => info.hash_ok = v == "SHA512",
                    _ => {}
                }),
                "encryptedKey" if xml::attr(e, "spinCount").is_some() => {
                    xml::each_attr(e, |_, name, v| match name {
                        "spinCount" => info.spin = v.parse().unwrap_or(u32::MAX),
                        "saltValue" => info.password_salt = b64(v),
                        "keyBits" => info.password_bits = v.parse().unwrap_or(0),
                        "hashAlgorithm" => info.hash_ok &= v == "SHA512",
                        "encryptedKeyValue" => info.encrypted_key = b64(v),
                        "encryptedVerifierHashInput" => info.verifier_input = b64(v),
                        "encryptedVerifierHashValue" => info.verifier_value = b64(v),
                        _ => {}
                    })
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    info
}

/// AES-CBC without padding, for a 128- or 256-bit key; `None` for any other shape.
fn aes_cbc(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut out = data.get(..data.len() / 16 * 16)?.to_vec();
    let iv = iv.get(..16)?;
    match key.len() {
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut out)
            .ok()?,
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut out)
            .ok()?,
        _ => return None,
    };
    Some(out)
}

/// The package deciphered with Excel's default password, or `Encrypted`.
pub fn decrypt(cfb: &Compound<'_>, budget: &Budget) -> Result<Vec<u8>, ReadError> {
    let (Some(info), Some(package)) =
        (cfb.stream("EncryptionInfo"), cfb.stream("EncryptedPackage"))
    else {
        return Err(ReadError::Encrypted);
    };
    // Agile encryption is version 4.4, its XML after an 8-byte header.
    if info.get(..4) != Some(&[4, 0, 4, 0]) {
        return Err(ReadError::Encrypted);
    }
    let i = parse(info.get(8..).unwrap_or_default());
    let key_len = i.password_bits / 8;
    if !i.hash_ok
        || i.spin > MAX_SPIN
        || !matches!(key_len, 16 | 32)
        || i.key_bits != i.password_bits
    {
        return Err(ReadError::Encrypted);
    }
    let password: Vec<u8> = DEFAULT_PASSWORD.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut h = Sha512::new().chain_update(&i.password_salt).chain_update(&password).finalize();
    for n in 0..i.spin {
        if n % 10_000 == 0 {
            budget.tick()?;
        }
        h = Sha512::new().chain_update(n.to_le_bytes()).chain_update(h).finalize();
    }
    let derive = |block: &[u8]| Sha512::new().chain_update(h).chain_update(block).finalize();
    let open = |block: &[u8], data: &[u8]| {
        aes_cbc(&derive(block)[..key_len], &i.password_salt, data).ok_or(ReadError::Encrypted)
    };
    let input = open(&VERIFIER_INPUT_BLOCK, &i.verifier_input)?;
    let value = open(&VERIFIER_VALUE_BLOCK, &i.verifier_value)?;
    let expected = Sha512::digest(input.get(..16).unwrap_or_default());
    if value.get(..64) != Some(&expected[..]) {
        return Err(ReadError::Encrypted); // a password of the sender's own
    }
    let secret = open(&KEY_BLOCK, &i.encrypted_key)?;
    let secret = secret.get(..key_len).ok_or(ReadError::Encrypted)?;
    let size = package
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    let mut out = Vec::with_capacity(package.len());
    for (n, segment) in package.get(8..).unwrap_or_default().chunks(SEGMENT).enumerate() {
        budget.tick()?;
        let iv = Sha512::new().chain_update(&i.key_salt).chain_update((n as u32).to_le_bytes());
        let iv = iv.finalize();
        let block = i.block_size.clamp(16, 64);
        out.extend(aes_cbc(secret, &iv[..block], segment).ok_or(ReadError::Encrypted)?);
    }
    out.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    Ok(out)
}
