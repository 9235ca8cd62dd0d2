//! The local backend: the cluster store of a host that is its own cluster,
//! in plain files.
//!
//! Layout under the store's directory (`/etc/wirehook/cluster`):
//!
//! - `kv/@<key>`: one file per key, `/` in the key written as `!`
//!   (`/wirehook/overlay/n1` is `kv/@!wirehook!overlay!n1`). A flat
//!   directory keeps etcd's meaning of a prefix (any string prefix, not just
//!   whole path components). The file holds one header line
//!   `wirehook-kv 1 <create_revision> <mod_revision>` and then the value's
//!   bytes as they are.
//! - `revision`: the store's revision, raised by one on every change.
//! - `lock`: the flock every change (and every listing) holds, so that a
//!   multi-key [`create`](Store::create) or [`delete`](Store::delete) is seen
//!   whole or not at all by other processes on this host.
//!
//! Every file is written atomically (temporary file, fsync, rename). Leases
//! are accepted and ignored: on one host, the host is alive as long as
//! anyone asks.
//!
//! Keys: `/`-separated components of `[A-Za-z0-9_.:-]`, none empty (a
//! leading `/` is fine), none `.` or `..`, at most [`MAX_KEY_LEN`] bytes so
//! that a key fits a file name.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::etcd::check_distinct;
use super::{Kv, Listing, Store};
use crate::error::{Error, Result};
use crate::fsutil::{self, Lock};

/// Longest key the local store takes (a file name is at most 255 bytes,
/// and the temporary file of an atomic write adds a few).
pub const MAX_KEY_LEN: usize = 200;

const HEADER_MAGIC: &str = "wirehook-kv 1";

/// Files under one directory, as a [`Store`].
#[derive(Debug, Clone)]
pub struct Local {
    dir: PathBuf,
}

fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// Checks a key (see the module docs).
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("cluster store key {key:?}: {why}")));
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad(&format!("longer than {MAX_KEY_LEN} bytes"));
    }
    let body = key.strip_prefix('/').unwrap_or(key);
    for comp in body.split('/') {
        if comp.is_empty() {
            return bad("empty path component");
        }
        if comp == "." || comp == ".." {
            return bad("`.` and `..` are not allowed");
        }
        if !comp.bytes().all(safe_byte) {
            return bad("only letters, digits, `_`, `.`, `:`, `-` and `/` separators are allowed");
        }
    }
    Ok(())
}

/// Checks a prefix: like a key, but it may end in `/` or in the middle of
/// a component, and may be empty (everything).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "cluster store prefix {prefix:?}: {why}"
        )))
    };
    if prefix.len() > MAX_KEY_LEN {
        return bad(&format!("longer than {MAX_KEY_LEN} bytes"));
    }
    if !prefix.bytes().all(|b| b == b'/' || safe_byte(b)) {
        return bad("only letters, digits, `_`, `.`, `:`, `-` and `/` separators are allowed");
    }
    if prefix.contains("//") {
        return bad("empty path component");
    }
    if prefix
        .split('/')
        .enumerate()
        .any(|(i, c)| c == ".." || (c == "." && i + 1 < prefix.split('/').count()))
    {
        return bad("`.` and `..` are not allowed");
    }
    Ok(())
}

/// File name of a (valid) key.
fn file_name(key: &str) -> String {
    format!("@{}", key.replace('/', "!"))
}

/// Key of a file name, if it is one of ours.
fn key_of(name: &str) -> Option<String> {
    let key = name.strip_prefix('@')?.replace('!', "/");
    validate_key(&key).ok()?;
    Some(key)
}

impl Local {
    /// The store in `dir` (created on the first change).
    pub fn new(dir: impl Into<PathBuf>) -> Local {
        Local { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn kv_dir(&self) -> PathBuf {
        self.dir.join("kv")
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.kv_dir().join(file_name(key))
    }

    fn revision_path(&self) -> PathBuf {
        self.dir.join("revision")
    }

    fn lock(&self) -> Result<Lock> {
        Lock::exclusive(&self.dir.join("lock"))
    }

    fn error(&self, what: String) -> Error {
        Error::Store(format!("local store {}: {what}", self.dir.display()))
    }

    fn read_revision(&self) -> Result<i64> {
        let path = self.revision_path();
        match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| {
                self.error(format!(
                    "{} holds {:?}, not a revision",
                    path.display(),
                    s.trim()
                ))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Raise the revision by one (under the lock) and return the new one.
    /// Written before the keys it covers: a crash in between leaves a
    /// revision without a change, never two changes with one revision.
    fn bump_revision(&self) -> Result<i64> {
        let rev = self.read_revision()? + 1;
        fsutil::write_durable(&self.revision_path(), format!("{rev}\n").as_bytes())?;
        Ok(rev)
    }

    fn read_kv(&self, key: &str) -> Result<Option<Kv>> {
        let path = self.key_path(key);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let malformed = || self.error(format!("{}: not a wirehook-kv file", path.display()));
        let nl = data
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(malformed)?;
        let header = std::str::from_utf8(&data[..nl]).map_err(|_| malformed())?;
        let revs = header.strip_prefix(HEADER_MAGIC).ok_or_else(malformed)?;
        let mut it = revs.split_whitespace().map(str::parse::<i64>);
        let (Some(Ok(create_revision)), Some(Ok(mod_revision)), None) =
            (it.next(), it.next(), it.next())
        else {
            return Err(malformed());
        };
        Ok(Some(Kv {
            key: key.to_string(),
            value: data[nl + 1..].to_vec(),
            create_revision,
            mod_revision,
            lease: 0,
        }))
    }

    fn write_kv(&self, key: &str, value: &[u8], create_revision: i64, rev: i64) -> Result<()> {
        let mut data = format!("{HEADER_MAGIC} {create_revision} {rev}\n").into_bytes();
        data.extend_from_slice(value);
        fsutil::write_durable(&self.key_path(key), &data)
    }

    /// Keys under `prefix`, sorted (the lock should be held).
    fn keys_under(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.kv_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        let mut keys = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            if let Some(key) = entry.file_name().to_str().and_then(key_of) {
                if key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

impl Store for Local {
    fn describe(&self) -> String {
        format!("local {}", self.dir.display())
    }

    fn range(&self, prefix: &str) -> Result<Listing> {
        validate_prefix(prefix)?;
        if !self.dir.exists() {
            return Ok(Listing {
                kvs: Vec::new(),
                revision: 0,
            });
        }
        let _lock = self.lock()?;
        let revision = self.read_revision()?;
        let mut kvs = Vec::new();
        for key in self.keys_under(prefix)? {
            if let Some(kv) = self.read_kv(&key)? {
                kvs.push(kv);
            }
        }
        Ok(Listing { kvs, revision })
    }

    fn get(&self, key: &str) -> Result<Option<Kv>> {
        validate_key(key)?;
        // One file, replaced by rename: no lock needed to read it whole.
        self.read_kv(key)
    }

    fn create(&self, puts: &[(&str, &[u8])]) -> Result<bool> {
        for (k, _) in puts {
            validate_key(k)?;
        }
        check_distinct(puts.iter().map(|(k, _)| *k))?;
        if puts.is_empty() {
            return Ok(true);
        }
        let _lock = self.lock()?;
        for (k, _) in puts {
            if self.key_path(k).exists() {
                return Ok(false);
            }
        }
        let rev = self.bump_revision()?;
        for (k, v) in puts {
            self.write_kv(k, v, rev, rev)?;
        }
        Ok(true)
    }

    fn put(&self, key: &str, value: &[u8], _lease: Option<i64>) -> Result<()> {
        validate_key(key)?;
        let _lock = self.lock()?;
        let created = self.read_kv(key)?.map(|kv| kv.create_revision);
        let rev = self.bump_revision()?;
        self.write_kv(key, value, created.unwrap_or(rev), rev)
    }

    fn delete(&self, keys: &[&str]) -> Result<()> {
        for k in keys {
            validate_key(k)?;
        }
        if keys.is_empty() || !self.dir.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let present: Vec<PathBuf> = keys
            .iter()
            .map(|k| self.key_path(k))
            .filter(|p| p.exists())
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        self.bump_revision()?;
        for p in present {
            fsutil::remove_file(&p)?;
        }
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        validate_prefix(prefix)?;
        if prefix.is_empty() {
            return Err(Error::invalid(
                "cluster store: refusing to delete every key (empty prefix)",
            ));
        }
        if !self.dir.exists() {
            return Ok(0);
        }
        let _lock = self.lock()?;
        let keys = self.keys_under(prefix)?;
        if keys.is_empty() {
            return Ok(0);
        }
        self.bump_revision()?;
        for k in &keys {
            fsutil::remove_file(&self.key_path(k))?;
        }
        Ok(keys.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "wh-cluster-local-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn keys() {
        for ok in [
            "/wirehook/overlay/n1/subnets/10.1.2.0-24",
            "a",
            "/a",
            "a/b:c/d_e.f-g",
            "/.hidden/x",
        ] {
            validate_key(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "", "/", "//a", "/a//b", "/a/", "/a/../b", "..", "/a/./b", "/a b", "/a\\b", "/a@b",
            "/a!b", "/ä", "/a\n",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_key(&format!("/{}", "a".repeat(MAX_KEY_LEN))).is_err());
        for ok in ["", "/", "/wirehook/", "/wirehook/ov", "a", "/x/."] {
            validate_prefix(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in ["//", "/a//", "/../", "/a/./b", "/a b", "/a!"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(file_name("/wirehook/n1"), "@!wirehook!n1");
        assert_eq!(key_of("@!wirehook!n1").as_deref(), Some("/wirehook/n1"));
        assert_eq!(key_of("a"), None);
        assert_eq!(key_of(".@!a.1.tmp"), None);
    }

    #[test]
    fn empty_store() {
        let t = TempDir::new();
        let s = Local::new(t.0.join("cluster"));
        let l = s.range("/").unwrap();
        assert!(l.kvs.is_empty());
        assert_eq!(l.revision, 0);
        assert_eq!(s.get("/a").unwrap(), None);
        s.delete(&["/a"]).unwrap();
        assert_eq!(s.delete_prefix("/a").unwrap(), 0);
        assert!(!t.0.join("cluster").exists(), "reads made the directory");
        assert_eq!(
            s.describe(),
            format!("local {}", t.0.join("cluster").display())
        );
    }

    #[test]
    fn create_put_get_range() {
        let t = TempDir::new();
        let s = Local::new(&t.0);
        assert!(s.create(&[("/n/b", b"2"), ("/n/a", b"1")]).unwrap());
        assert_eq!(s.range("").unwrap().revision, 1);
        // One existing key spoils the whole create.
        assert!(!s.create(&[("/n/c", b"3"), ("/n/a", b"x")]).unwrap());
        assert_eq!(s.get("/n/c").unwrap(), None);
        assert_eq!(s.get("/n/a").unwrap().unwrap().value, b"1");
        assert_eq!(
            s.range("").unwrap().revision,
            1,
            "a failed create changes nothing"
        );
        assert!(s.create(&[("/a", b""), ("/a", b"")]).is_err());
        assert!(s.create(&[("/ok", b""), ("/../x", b"")]).is_err());
        assert!(s.create(&[]).unwrap());

        s.put("/n/a", b"one\nwith newline", Some(42)).unwrap();
        s.put("/n/ab", b"", None).unwrap();
        s.put("/m", b"m", None).unwrap();
        let a = s.get("/n/a").unwrap().unwrap();
        assert_eq!(
            a,
            Kv {
                key: "/n/a".into(),
                value: b"one\nwith newline".to_vec(),
                create_revision: 1,
                mod_revision: 2,
                lease: 0,
            }
        );
        let l = s.range("/n/").unwrap();
        assert_eq!(l.revision, 4);
        let keys: Vec<&str> = l.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/n/a", "/n/ab", "/n/b"]);
        assert_eq!(l.kvs[1].create_revision, 3);
        assert_eq!(l.kvs[1].value, b"");
        // A prefix is any string prefix, as in etcd.
        let keys: Vec<String> = s
            .range("/n/a")
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, ["/n/a", "/n/ab"]);
        assert_eq!(s.range("").unwrap().kvs.len(), 4);
        // Keys with and without the leading slash are different keys.
        s.put("n/a", b"rel", None).unwrap();
        assert_eq!(s.get("/n/a").unwrap().unwrap().value, b"one\nwith newline");
        assert_eq!(s.get("n/a").unwrap().unwrap().value, b"rel");
        assert!(s.range("/../").is_err());
    }

    #[test]
    fn deletes() {
        let t = TempDir::new();
        let s = Local::new(&t.0);
        for k in ["/p/1", "/p/2", "/p/3", "/q/1"] {
            s.put(k, k.as_bytes(), None).unwrap();
        }
        s.delete(&["/p/1", "/missing", "/p/2"]).unwrap();
        assert_eq!(s.range("").unwrap().revision, 5);
        s.delete(&["/missing"]).unwrap();
        assert_eq!(
            s.range("").unwrap().revision,
            5,
            "deleting nothing changes nothing"
        );
        assert_eq!(s.get("/p/1").unwrap(), None);
        assert_eq!(s.delete_prefix("/p/").unwrap(), 1);
        assert_eq!(s.delete_prefix("/p/").unwrap(), 0);
        assert!(s.delete_prefix("").is_err());
        let l = s.range("").unwrap();
        assert_eq!(l.revision, 6);
        assert_eq!(l.kvs.len(), 1);
        assert_eq!(l.kvs[0].key, "/q/1");
        // Re-created keys start over.
        s.put("/p/1", b"again", None).unwrap();
        let kv = s.get("/p/1").unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (7, 7));
    }

    #[test]
    fn racing_creates_have_one_winner() {
        let t = TempDir::new();
        let dir = t.0.clone();
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (dir, barrier) = (dir.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let s = Local::new(dir);
                    let v = format!("host-{i}");
                    barrier.wait();
                    let won = s
                        .create(&[
                            ("/subnets/10.1.0.0-24", v.as_bytes()),
                            ("/mine", v.as_bytes()),
                        ])
                        .unwrap();
                    (i, won)
                })
            })
            .collect();
        let winners: Vec<usize> = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|(_, won)| *won)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let s = Local::new(&dir);
        let want = format!("host-{}", winners[0]);
        assert_eq!(
            s.get("/subnets/10.1.0.0-24").unwrap().unwrap().value,
            want.as_bytes()
        );
        assert_eq!(s.get("/mine").unwrap().unwrap().value, want.as_bytes());
        assert_eq!(s.range("").unwrap().revision, 1);
    }

    #[test]
    fn malformed_files_are_named() {
        let t = TempDir::new();
        let s = Local::new(&t.0);
        s.put("/a", b"1", None).unwrap();
        fs::write(t.0.join("kv/@!a"), b"garbage").unwrap();
        let err = s.get("/a").unwrap_err().to_string();
        assert!(
            err.contains("@!a") && err.starts_with("cluster store: local store"),
            "{err}"
        );
        // Stray files (temporaries, editors' leftovers) are not keys.
        fs::write(t.0.join("kv/.@!b.1.tmp"), b"x").unwrap();
        fs::write(t.0.join("kv/notes.txt"), b"x").unwrap();
        fs::write(t.0.join("kv/@!a"), b"wirehook-kv 1 1 1\n1").unwrap();
        assert_eq!(s.range("").unwrap().kvs.len(), 1);
    }
}
