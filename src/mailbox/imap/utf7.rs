//! Folder names in IMAP's modified UTF-7 (RFC 3501 §5.1.3), both ways: the config names a
//! folder as a mail client shows it ("Verarbeitet/Rückläufer"), the server is sent and answers
//! "Verarbeitet/R&APw-ckl&AOQ-ufer".
//!
//! Written by hand: the one crate for it (utf7-imap 0.3) panics on a malformed name (an
//! `unwrap` of its base64 decode), and a name in a LIST answer is the server's input, not ours.
//! The encoding is small: printable ASCII stands for itself except `&`, written `&-`; anything
//! else is UTF-16BE in base64 with `,` for `/` and no padding, between `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// The name as sent to the server.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut wide: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut wide, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            wide.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut wide, &mut out);
    out
}

/// Writes the pending UTF-16 units as one `&…-` run.
fn flush(wide: &mut Vec<u16>, out: &mut String) {
    if wide.is_empty() {
        return;
    }
    let bytes: Vec<u8> = wide.drain(..).flat_map(u16::to_be_bytes).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out.push('-');
}

/// The name as a person reads it, or `None` when the server's name is not valid modified UTF-7
/// (then it is compared as it stands).
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(printable(&rest[..start])?);
        let after = &rest[start + 1..];
        let end = after.find('-')?;
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_run(run)?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(printable(rest)?);
    Some(out)
}

fn printable(s: &str) -> Option<&str> {
    s.bytes().all(|b| (0x20..0x7f).contains(&b)).then_some(s)
}

/// One base64 run (between `&` and `-`) → its characters.
fn decode_run(run: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut count = 0u32;
    let mut bytes = Vec::with_capacity(run.len() * 3 / 4);
    for b in run.bytes() {
        let v = ALPHABET.iter().position(|&a| a == b)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // Leftover bits must be zero padding, and the bytes whole UTF-16 units.
    if bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    let text = String::from_utf16(&units).ok()?;
    // RFC 3501: a printable ASCII character is never encoded, so a run holding one is not ours.
    (!text.chars().any(|c| (' '..='~').contains(&c))).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_3501_example_and_other_scripts_round_trip() {
        // RFC 3501 §5.1.3's example.
        assert_eq!(encode("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(encode("Verarbeitet/Rückläufer"), "Verarbeitet/R&APw-ckl&AOQ-ufer");
        assert_eq!(encode("Отправленные"), "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-");
        for name in ["Processed", "A & B", "&", "Ünïcödé 📬 done", "Обработано", "a&-b"]
        {
            assert_eq!(decode(&encode(name)).as_deref(), Some(name), "{name}");
        }
        assert_eq!(encode("A & B"), "A &- B");
    }

    #[test]
    fn malformed_names_from_a_server_are_refused_not_a_panic() {
        for bad in ["&", "&AOQ", "&!!-", "&AO-", "&AGE-", "tab\there", "&2D0-"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
