//! Helpers of the `engine` bench: an instrumented [`Fs`] over [`RealFs`] (counts fsyncs and the
//! time spent in them, or skips them for fast setup), latency statistics, and small file
//! utilities.

use kubeharden::fsys::real::RealFs;
use kubeharden::fsys::{Fs, FsFile, Meta};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What went through an [`InstrFs`].
#[derive(Default)]
pub struct Counters {
    pub file_syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
    /// Nanoseconds inside file and directory fsyncs.
    pub sync_ns: AtomicU64,
    /// Every other file-system call (stat, open, write, rename, ...).
    pub other_ops: AtomicU64,
    pub other_ns: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub sync_ns: u64,
    pub other_ops: u64,
    pub other_ns: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            file_syncs: self.file_syncs.load(Ordering::Relaxed),
            dir_syncs: self.dir_syncs.load(Ordering::Relaxed),
            sync_ns: self.sync_ns.load(Ordering::Relaxed),
            other_ops: self.other_ops.load(Ordering::Relaxed),
            other_ns: self.other_ns.load(Ordering::Relaxed),
        }
    }

    fn other<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.other_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.other_ops.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn sync(&self, dir: bool, skip: bool, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        if dir {
            self.dir_syncs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.file_syncs.fetch_add(1, Ordering::Relaxed);
        }
        if skip {
            return Ok(());
        }
        let t = Instant::now();
        let r = f();
        self.sync_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

impl Snapshot {
    pub fn minus(self, o: Snapshot) -> Snapshot {
        Snapshot {
            file_syncs: self.file_syncs - o.file_syncs,
            dir_syncs: self.dir_syncs - o.dir_syncs,
            sync_ns: self.sync_ns - o.sync_ns,
            other_ops: self.other_ops - o.other_ops,
            other_ns: self.other_ns - o.other_ns,
        }
    }
}

/// [`RealFs`] with every call counted and timed. With `skip_sync`, fsyncs (file and directory)
/// return at once: used only to build large states quickly (their content is the same; only
/// durability against power loss, irrelevant to the bench, is given up).
pub struct InstrFs {
    inner: RealFs,
    skip_sync: bool,
    pub counters: Arc<Counters>,
}

impl InstrFs {
    pub fn new(skip_sync: bool) -> InstrFs {
        InstrFs {
            inner: RealFs,
            skip_sync,
            counters: Arc::new(Counters::default()),
        }
    }
}

struct InstrFile {
    inner: Box<dyn FsFile>,
    skip_sync: bool,
    c: Arc<Counters>,
}

impl FsFile for InstrFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let c = self.c.clone();
        c.other(|| self.inner.write_all(buf))
    }
    fn sync(&mut self) -> io::Result<()> {
        let c = self.c.clone();
        c.sync(false, self.skip_sync, || self.inner.sync())
    }
    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        let c = self.c.clone();
        c.other(|| self.inner.set_mode(mode))
    }
    fn set_owner(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        let c = self.c.clone();
        c.other(|| self.inner.set_owner(uid, gid))
    }
}

impl InstrFs {
    fn wrap(&self, f: io::Result<Box<dyn FsFile>>) -> io::Result<Box<dyn FsFile>> {
        f.map(|inner| {
            Box::new(InstrFile {
                inner,
                skip_sync: self.skip_sync,
                c: self.counters.clone(),
            }) as Box<dyn FsFile>
        })
    }
}

impl Fs for InstrFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.counters.other(|| self.inner.read(path))
    }
    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.counters.other(|| self.inner.metadata(path))
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.counters.other(|| self.inner.list_dir(dir))
    }
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.counters.other(|| self.inner.create_dir(path, mode))
    }
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn FsFile>> {
        let f = self.counters.other(|| self.inner.create_new(path, mode));
        self.wrap(f)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = self.counters.other(|| self.inner.open_append(path));
        self.wrap(f)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.counters.other(|| self.inner.rename(from, to))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.counters.other(|| self.inner.remove_file(path))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.counters
            .sync(true, self.skip_sync, || self.inner.sync_dir(dir))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        // Cuts and fsyncs; only recovery of a torn tail does it, never in these benches.
        self.counters.other(|| self.inner.truncate(path, len))
    }
}

/// Latency samples of one variant.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    /// Median (mean of the two middle samples for an even count), in ms.
    pub fn median_ms(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        assert!(n > 0, "no samples");
        let mid = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        };
        ms(mid)
    }

    /// 90th percentile, nearest rank, in ms.
    pub fn p90_ms(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        assert!(n > 0, "no samples");
        let rank = (n * 9).div_ceil(10).max(1);
        ms(v[rank - 1])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every regular file under `dir` (recursively): (count, sum of sizes, sum of allocated bytes).
/// Dot-files (the store's temps) are left out.
pub fn tree_usage(dir: &Path) -> io::Result<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = (0, 0, 0);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            let sub = tree_usage(&e.path())?;
            out = (out.0 + sub.0, out.1 + sub.1, out.2 + sub.2);
        } else if m.is_file() && !e.file_name().to_string_lossy().starts_with('.') {
            out.0 += 1;
            out.1 += m.len();
            out.2 += m.blocks() * 512;
        }
    }
    Ok(out)
}
