//! [`Fs`] wrapper that injects I/O errors: SQLite's I/O-error loop over the file-system trait.
//!
//! [`FaultFs`] counts every file operation it forwards (the [`Op`]s: reads and metadata too,
//! and the calls on open handles) and fails operation number `n` (1-based) with a chosen
//! [`Fault`]. A test runs a scenario once without a fault to learn [`FaultFs::ops`], then runs it
//! again for every `n` in `1..=ops` and each fault, and checks what survives.
//!
//! - [`Fault::Eio`] / [`Fault::Enospc`]: operation `n` fails with that errno and does nothing.
//! - [`Fault::ShortWrite`]: if operation `n` is a `write_all`, the first half of the buffer is
//!   written and then it fails with `ENOSPC` (a disk that filled up mid-write); any other
//!   operation fails with `ENOSPC`.
//! - [`Fault::DeadDisk`]: operation `n` and every operation after it fail with `EIO`.
//!
//! A failed `sync` does not call the inner `sync`: nothing written since the last good fsync is
//! made durable by it. Over a [`SimFs`] built with [`FaultFs::over_sim`], a failed `sync` goes
//! further and makes the simulator drop the unsynced bytes for good, as Linux does since
//! "fsyncgate" (a later fsync does not bring them back).

use super::sim::SimFs;
use super::{Fs, FsFile, Meta};
use nix::errno::Errno;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The file operations that are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Metadata,
    ListDir,
    CreateDir,
    CreateNew,
    OpenAppend,
    WriteAll,
    Sync,
    SetMode,
    SetOwner,
    Rename,
    RemoveFile,
    SyncDir,
    Truncate,
}

/// What the failing operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Eio,
    Enospc,
    /// Half of a write lands, then `ENOSPC`.
    ShortWrite,
    /// `EIO` from this operation on, for every operation.
    DeadDisk,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::Eio,
        Fault::Enospc,
        Fault::ShortWrite,
        Fault::DeadDisk,
    ];
}

/// One operation that was made to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub number: u64,
    pub op: Op,
    pub path: PathBuf,
    pub fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    ops: u64,
    fail_at: Option<(u64, Fault)>,
    dead: bool,
    injected: Vec<Injected>,
    trace: Vec<(Op, PathBuf)>,
}

/// What the counter decided for one operation.
enum Verdict {
    Pass,
    Fail(io::Error),
    /// Write this many bytes, then fail.
    Short(usize),
}

#[derive(Clone)]
pub struct FaultFs {
    inner: Arc<dyn Fs>,
    sim: Option<SimFs>,
    state: Arc<Mutex<State>>,
}

fn os(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

impl FaultFs {
    /// Count the operations on `inner`; inject nothing until [`FaultFs::fail_at`].
    pub fn new(inner: Arc<dyn Fs>) -> Self {
        FaultFs {
            inner,
            sim: None,
            state: Arc::default(),
        }
    }

    /// Over the simulator, with fsyncgate semantics for an injected fsync failure.
    pub fn over_sim(sim: SimFs) -> Self {
        FaultFs {
            inner: Arc::new(sim.clone()),
            sim: Some(sim),
            state: Arc::default(),
        }
    }

    /// Fail operation number `n` (1-based, counted from creation or the last [`reset`]).
    ///
    /// [`reset`]: FaultFs::reset
    pub fn fail_at(&self, n: u64, fault: Fault) {
        self.lock().fail_at = Some((n, fault));
    }

    /// Zero the counter, clear the fault and bring a dead disk back.
    pub fn reset(&self) {
        *self.lock() = State::default();
    }

    /// Operations attempted so far (failed ones included).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Every operation so far, in order: operation number `n` is `trace()[n - 1]`.
    pub fn trace(&self) -> Vec<(Op, PathBuf)> {
        self.lock().trace.clone()
    }

    /// The operations that were made to fail, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.lock().injected.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verdict(&self, op: Op, path: &Path, write_len: usize) -> Verdict {
        let mut st = self.lock();
        st.ops += 1;
        st.trace.push((op, path.to_path_buf()));
        let number = st.ops;
        let fault = match st.fail_at {
            _ if st.dead => Fault::DeadDisk,
            Some((n, f)) if n == number => f,
            _ => return Verdict::Pass,
        };
        if fault == Fault::DeadDisk {
            st.dead = true;
        }
        st.injected.push(Injected {
            number,
            op,
            path: path.to_path_buf(),
            fault,
        });
        match fault {
            Fault::Eio | Fault::DeadDisk => Verdict::Fail(os(Errno::EIO)),
            Fault::Enospc => Verdict::Fail(os(Errno::ENOSPC)),
            Fault::ShortWrite if op == Op::WriteAll => Verdict::Short(write_len / 2),
            Fault::ShortWrite => Verdict::Fail(os(Errno::ENOSPC)),
        }
    }

    fn check(&self, op: Op, path: &Path) -> io::Result<()> {
        match self.verdict(op, path, 0) {
            Verdict::Pass => Ok(()),
            Verdict::Fail(e) => Err(e),
            Verdict::Short(_) => Err(os(Errno::ENOSPC)),
        }
    }

    fn wrap(&self, path: &Path, file: Box<dyn FsFile>) -> Box<dyn FsFile> {
        Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            inner: file,
        })
    }
}

struct FaultFile {
    fs: FaultFs,
    path: PathBuf,
    inner: Box<dyn FsFile>,
}

impl FsFile for FaultFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.fs.verdict(Op::WriteAll, &self.path, buf.len()) {
            Verdict::Pass => self.inner.write_all(buf),
            Verdict::Fail(e) => Err(e),
            Verdict::Short(k) => {
                self.inner.write_all(&buf[..k])?;
                Err(os(Errno::ENOSPC))
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let err = match self.fs.verdict(Op::Sync, &self.path, 0) {
            Verdict::Pass => return self.inner.sync(),
            Verdict::Fail(e) => e,
            Verdict::Short(_) => os(Errno::ENOSPC),
        };
        if let Some(sim) = &self.fs.sim {
            // Let the simulator fail this fsync itself, so that it drops the unsynced bytes.
            sim.fail_sync_on(sim.syncs_done() + 1);
            let _ = self.inner.sync();
        }
        Err(err)
    }

    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        self.fs.check(Op::SetMode, &self.path)?;
        self.inner.set_mode(mode)
    }

    fn set_owner(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        self.fs.check(Op::SetOwner, &self.path)?;
        self.inner.set_owner(uid, gid)
    }
}

impl Fs for FaultFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.check(Op::Read, path)?;
        self.inner.read(path)
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.check(Op::Metadata, path)?;
        self.inner.metadata(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check(Op::ListDir, dir)?;
        self.inner.list_dir(dir)
    }

    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.check(Op::CreateDir, path)?;
        self.inner.create_dir(path, mode)
    }

    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn FsFile>> {
        self.check(Op::CreateNew, path)?;
        let f = self.inner.create_new(path, mode)?;
        Ok(self.wrap(path, f))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.check(Op::OpenAppend, path)?;
        let f = self.inner.open_append(path)?;
        Ok(self.wrap(path, f))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Op::Rename, from)?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(Op::RemoveFile, path)?;
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(Op::SyncDir, dir)?;
        self.inner.sync_dir(dir)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.check(Op::Truncate, path)?;
        self.inner.truncate(path, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SimFs, FaultFs) {
        let sim = SimFs::new();
        sim.mkdir_p(Path::new("/s"), 0o700).unwrap();
        (sim.clone(), FaultFs::over_sim(sim))
    }

    /// create, write, sync, sync_dir, read: five operations.
    fn scenario(fs: &dyn Fs) -> io::Result<Vec<u8>> {
        let p = Path::new("/s/f");
        let mut f = fs.create_new(p, 0o600)?;
        f.write_all(b"abcdefgh")?;
        f.sync()?;
        fs.sync_dir(Path::new("/s"))?;
        fs.read(p)
    }

    #[test]
    fn counts_every_operation_and_passes_without_a_fault() {
        let (_, fs) = setup();
        assert_eq!(scenario(&fs).unwrap(), b"abcdefgh");
        assert_eq!(fs.ops(), 5);
        assert!(fs.injected().is_empty());
        let ops: Vec<Op> = fs.trace().into_iter().map(|(op, _)| op).collect();
        assert_eq!(
            ops,
            [Op::CreateNew, Op::WriteAll, Op::Sync, Op::SyncDir, Op::Read]
        );
        fs.reset();
        assert_eq!(fs.ops(), 0);
    }

    #[test]
    fn fails_exactly_operation_n_with_the_errno() {
        for (fault, errno) in [(Fault::Eio, Errno::EIO), (Fault::Enospc, Errno::ENOSPC)] {
            for n in 1..=5 {
                let (_, fs) = setup();
                fs.fail_at(n, fault);
                let err = scenario(&fs).unwrap_err();
                assert_eq!(err.raw_os_error(), Some(errno as i32), "n={n}");
                assert_eq!(fs.ops(), n, "stops at the failing op");
                let inj = fs.injected();
                assert_eq!(inj.len(), 1);
                assert_eq!(inj[0].number, n);
                // A single fault: the next operation works again.
                assert!(fs.metadata(Path::new("/s")).is_ok());
            }
        }
        let (_, fs) = setup();
        fs.fail_at(2, Fault::Eio);
        let _ = scenario(&fs);
        assert_eq!(fs.injected()[0].op, Op::WriteAll);
        assert_eq!(fs.injected()[0].path, Path::new("/s/f"));
    }

    #[test]
    fn short_write_lands_half_then_enospc() {
        let (sim, fs) = setup();
        fs.fail_at(2, Fault::ShortWrite);
        let err = scenario(&fs).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::ENOSPC as i32));
        assert_eq!(sim.read_live(Path::new("/s/f")).unwrap(), b"abcd");
        // On an operation that is not a write it is a plain ENOSPC.
        let (_, fs) = setup();
        fs.fail_at(1, Fault::ShortWrite);
        assert_eq!(
            scenario(&fs).unwrap_err().raw_os_error(),
            Some(Errno::ENOSPC as i32)
        );
    }

    #[test]
    fn dead_disk_fails_everything_from_n_on_until_reset() {
        let (_, fs) = setup();
        fs.fail_at(3, Fault::DeadDisk);
        assert!(scenario(&fs).is_err());
        for _ in 0..3 {
            let e = fs.metadata(Path::new("/s")).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(Errno::EIO as i32));
        }
        assert_eq!(fs.injected().len(), 4);
        fs.reset();
        assert!(fs.metadata(Path::new("/s")).is_ok());
    }

    #[test]
    fn failed_sync_over_the_sim_drops_the_unsynced_bytes_for_good() {
        let (sim, fs) = setup();
        fs.fail_at(3, Fault::Eio);
        assert!(scenario(&fs).is_err());
        // A later good fsync does not rescue them (fsyncgate): after a power cut the bytes the
        // failed fsync should have written are zeros.
        let mut f = fs.open_append(Path::new("/s/f")).unwrap();
        f.write_all(b"XY").unwrap();
        f.sync().unwrap();
        fs.sync_dir(Path::new("/s")).unwrap();
        let after = sim.power_cut_exact();
        assert_eq!(
            after.read_live(Path::new("/s/f")).unwrap(),
            b"\0\0\0\0\0\0\0\0XY"
        );
    }

    #[test]
    fn a_failed_sync_over_any_fs_does_not_sync() {
        let sim = SimFs::new();
        sim.mkdir_p(Path::new("/s"), 0o700).unwrap();
        sim.write_file_durable(Path::new("/s/f"), b"", 0o600, 0, 0)
            .unwrap();
        let fs = FaultFs::new(Arc::new(sim.clone()));
        fs.fail_at(3, Fault::Enospc);
        let mut f = fs.open_append(Path::new("/s/f")).unwrap();
        f.write_all(b"abc").unwrap();
        assert_eq!(
            f.sync().unwrap_err().raw_os_error(),
            Some(Errno::ENOSPC as i32)
        );
        assert_eq!(
            sim.power_cut_exact().read_live(Path::new("/s/f")).unwrap(),
            b""
        );
    }
}
