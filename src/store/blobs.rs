//! Content-addressed blobs: raw messages and attachments, named by the SHA-256 of their bytes
//! and laid out as `<dir>/ab/cdef…`. A new blob is created under its name (never over an
//! existing file), written and flushed, and the directory flushed; a filing names it only after
//! that. A crash part-way can leave a short file that nothing names; storing the same bytes
//! again finds it by its hash check and replaces it whole, through a temporary file and a
//! rename. Every read is checked against its name. Owns only its directory.

use super::StoreError;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The lower-case hex SHA-256 of `bytes`: the name of its blob.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True for exactly 64 lower-case hex digits, which is also what keeps a hash from naming a
/// path outside the blob directory.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    /// Makes temporary names unique between threads of this process (the pid separates
    /// processes), so two writers of the same blob never share a temporary file.
    counter: AtomicU64,
    /// In a group commit: writes skip their own flush; [`Blobs::flush`] makes them durable.
    deferred: AtomicBool,
    /// Which of the 256 subdirectories (`00`…`ff`) this process has made or found, so a write
    /// does not ask the filesystem again each time.
    made: [AtomicBool; 256],
}

impl Blobs {
    /// Uses (and creates if needed) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Blobs, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        Ok(Blobs {
            dir,
            counter: AtomicU64::new(0),
            deferred: AtomicBool::new(false),
            made: std::array::from_fn(|_| AtomicBool::new(false)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob named `hash` lives (whether or not it exists).
    pub fn path(&self, hash: &str) -> Result<PathBuf, StoreError> {
        if !is_sha256_hex(hash) {
            return Err(StoreError::BadHash(hash.to_owned()));
        }
        Ok(self.dir.join(&hash[..2]).join(&hash[2..]))
    }

    /// Stores `bytes` durably and returns their hash. Storing bytes that are already there does
    /// not rewrite them (unless the stored file has the wrong length, i.e. was damaged).
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.write(bytes, !self.deferred.load(Ordering::SeqCst))
    }

    /// Writes `bytes` ahead of the filing that will name them, without waiting for the disk:
    /// they become durable at the next [`Blobs::flush`], which a batch runs before its commit.
    /// Until then nothing refers to them, so a crash leaves at most an unnamed blob.
    pub fn stage(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.write(bytes, false)
    }

    fn write(&self, bytes: &[u8], sync: bool) -> Result<String, StoreError> {
        let hash = sha256_hex(bytes);
        let path = self.path(&hash)?;
        let sub = path.parent().unwrap_or(&self.dir);
        self.make_subdir(&hash, sub)?;
        // A new blob is created under its own name, never over an existing file: one file
        // operation, where a temporary file and a rename took three. Until this returns nothing
        // refers to the name, so a crash part-way leaves a short file that no filing names, and
        // the hash check below finds it the next time these bytes are stored.
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                if let Err(e) = fill(&mut f, &path, bytes, sync) {
                    // Emptied through this handle, not removed by name: another writer of the
                    // same bytes may have put a whole copy under the name meanwhile. An empty
                    // file is found damaged and replaced the next time. Best effort: the error
                    // that matters is `e`.
                    let _ = f.set_len(0);
                    return Err(e);
                }
                if sync {
                    sync_dir(sub)?;
                }
                return Ok(hash);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io("create", &path, e)),
        }
        // Already there. After a power cut (or a crash while it was written) the file can be
        // short, or have the right length and the wrong bytes, so it is checked before being
        // trusted; a damaged one is replaced whole, through a temporary file and a rename, so a
        // reader never sees it half-written.
        match fs::metadata(&path) {
            Ok(m) if m.len() == bytes.len() as u64 && self.get(&hash).is_ok() => return Ok(hash),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {} // removed meanwhile: write it
            Err(e) => return Err(StoreError::io("stat", &path, e)),
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = sub.join(format!(".tmp-{}-{}-{n}", &hash[2..10], std::process::id()));
        let written = write_file(&tmp, bytes, sync)
            .and_then(|()| fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &path, e)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp); // best effort: the error that matters is `e`
            return Err(e);
        }
        if sync {
            sync_dir(sub)?;
        }
        Ok(hash)
    }

    /// Makes the subdirectory `sub` of the blob `hash` unless this process already has.
    fn make_subdir(&self, hash: &str, sub: &Path) -> Result<(), StoreError> {
        // The hash is checked hex, so its first two digits index the subdirectory.
        let made = u8::from_str_radix(&hash[..2], 16).ok().map(|i| &self.made[usize::from(i)]);
        if !made.is_some_and(|m| m.load(Ordering::Relaxed)) {
            fs::create_dir_all(sub).map_err(|e| StoreError::io("create", sub, e))?;
            if let Some(m) = made {
                m.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Start (true) or end (false) deferring flushes for a group commit.
    pub fn set_deferred(&self, deferred: bool) {
        self.deferred.store(deferred, Ordering::SeqCst);
    }

    /// Make every blob written so far durable with one flush of the filesystem that holds them
    /// (syncfs(2)): one disk flush for a whole batch instead of two per blob.
    pub fn flush(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.dir).map_err(|e| StoreError::io("open", &self.dir, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("syncfs", &self.dir, e.into()))
    }

    /// The bytes of blob `hash`, verified against it.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(hash)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing(hash.to_owned()))
            }
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        let actual = sha256_hex(&bytes);
        if actual != hash {
            return Err(StoreError::BlobCorrupt { hash: hash.to_owned(), actual });
        }
        Ok(bytes)
    }
}

fn write_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(|e| StoreError::io("create", path, e))?;
    fill(&mut f, path, bytes, sync)
}

/// Writes `bytes` into the new file `f` (at `path`), flushed to disk if `sync`.
fn fill(f: &mut File, path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
    f.write_all(bytes).map_err(|e| StoreError::io("write", path, e))?;
    if sync {
        f.sync_all().map_err(|e| StoreError::io("fsync", path, e))?;
    }
    Ok(())
}

/// Flushes a directory so a rename into it survives a power cut.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_round_trips_under_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path().join("blobs")).expect("open");
        let hash = blobs.put(b"hello return").expect("put");
        assert_eq!(hash, sha256_hex(b"hello return"));
        let path = blobs.path(&hash).expect("path");
        assert!(path.starts_with(dir.path().join("blobs").join(&hash[..2])));
        assert_eq!(blobs.get(&hash).expect("get"), b"hello return");
        // The second put is a no-op and leaves no temporary files behind.
        assert_eq!(blobs.put(b"hello return").expect("put again"), hash);
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(&hash[2..])]);
    }

    #[test]
    fn tampered_blob_is_reported_corrupt_and_repaired_by_a_new_put() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        let hash = blobs.put(b"KPI1,68653").expect("put");
        fs::write(blobs.path(&hash).expect("path"), b"KPI1,99999").expect("tamper");
        assert!(matches!(blobs.get(&hash), Err(StoreError::BlobCorrupt { .. })));
        // Same length, so put trusts it; a truncated file is rewritten.
        fs::write(blobs.path(&hash).expect("path"), b"KPI1").expect("truncate");
        blobs.put(b"KPI1,68653").expect("put again");
        assert_eq!(blobs.get(&hash).expect("get"), b"KPI1,68653");
    }

    #[test]
    fn a_staged_blob_is_kept_under_its_hash_like_a_put_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        let hash = blobs.stage(b"KPI3a,8123").expect("stage");
        assert_eq!(hash, sha256_hex(b"KPI3a,8123"));
        assert_eq!(blobs.get(&hash).expect("get"), b"KPI3a,8123");
        assert_eq!(blobs.put(b"KPI3a,8123").expect("put the same"), hash);
        blobs.flush().expect("made durable by the flush a batch runs before its commit");
    }

    #[test]
    fn a_short_file_left_by_a_crash_is_replaced_whole_when_the_bytes_come_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        let bytes = b"Return,KPI1,68653,KPI2,2140";
        let hash = sha256_hex(bytes);
        // A crash part-way through creating it left the start of the file under its name.
        let path = blobs.path(&hash).expect("path");
        fs::create_dir_all(path.parent().expect("parent")).expect("subdir");
        fs::write(&path, &bytes[..6]).expect("short file");
        for write in [Blobs::stage, Blobs::put] {
            assert_eq!(write(&blobs, bytes).expect("stored"), hash);
            assert_eq!(blobs.get(&hash).expect("whole now"), bytes);
            fs::write(&path, b"").expect("empty again");
        }
        // An intact blob is kept, not written again (its inode stays the same).
        blobs.put(bytes).expect("put");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("stat"));
        let before = inode(&path);
        blobs.stage(bytes).expect("stage the same");
        assert_eq!(inode(&path), before);
    }

    #[test]
    fn hashes_that_are_not_hex_cannot_name_a_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path()).expect("open");
        for bad in ["../../etc/passwd", "", &"A".repeat(64), &"0".repeat(63)] {
            assert!(matches!(blobs.get(bad), Err(StoreError::BadHash(_))), "{bad}");
        }
        assert!(matches!(blobs.get(&"0".repeat(64)), Err(StoreError::BlobMissing(_))));
    }
}
