//! [`Fs`] in memory, with a power switch.
//!
//! The model is POSIX-like and inode based, and it keeps two views of everything, in the
//! spirit of SQLite's crash VFS and redb's crash-consistency backend:
//!
//! - the **live** view, what every operation sees (what a running process sees), and
//! - the **durable** view, what is on the platter and survives a power cut.
//!
//! What makes what durable:
//! - File contents and metadata (`write_all`, `set_mode`, `set_owner`) are live only, until
//!   [`FsFile::sync`] copies the inode's live state (data, mode, owner, mtime) to its durable
//!   state. It does not make the file's *name* durable.
//! - Directory entries (`create_new`, `create_dir`, `rename`, `remove_file`) change the live
//!   entries of the parent directories; [`Fs::sync_dir`] copies a directory's live entries to
//!   its durable entries. A new inode is born durable but empty, with its creation mode.
//! - [`Fs::truncate`] fsyncs, as in the real implementation, so the cut is durable.
//! - The test helpers (`mkdir_p`, `write_file_durable`, `add_symlink`) make everything they
//!   touch durable at once; they are not operations of the simulated process and are neither
//!   counted nor stopped by the power switch.
//!
//! [`SimFs::power_cut`] returns the file system after the power came back: the tree reachable
//! from the root through durable entries, each file with its durable state. When a file's live
//! data extends its durable data (appends not yet fsynced), a seeded PRNG keeps nothing, all,
//! or a random prefix of the extension: a torn write. Any other un-synced change (an overwrite)
//! reverts to the durable data. So a created and fsynced file whose directory was not synced
//! disappears, an un-synced rename is undone and an un-synced unlink comes back.
//! A directory reachable under two durable names (possible when a directory rename was synced
//! on one side only) keeps only the first one found from the root, so the tree stays a tree;
//! a file keeps both (a hard link).
//! [`SimFs::power_cut_exact`] keeps exactly the durable state (no torn prefixes).
//!
//! [`SimFs::set_fail_after`] is the power switch: every mutating operation counts (even one
//! that then fails on a bad path, so a scenario's count does not depend on the cut), and once
//! `n` have been done every operation (reads too) fails with "simulated power loss", so the
//! process cannot make progress after the moment the test cuts the power at.
//!
//! [`SimFs::fail_sync_on`] makes the n-th file fsync fail with `EIO`. As on Linux since
//! "fsyncgate", the data that fsync should have written is then gone: the live view still
//! shows it, but the byte range that was not durable at the failure is marked lost, and no
//! later fsync rescues it: a later successful fsync writes everything else, and the lost range
//! reads back as what was durable there before, or zeros (a hole) beyond the old end.
//! Truncating forgets what it cuts off of a lost range: those bytes no longer exist.
//!
//! Deliberately stricter than POSIX: every path component that is a symlink gives `ELOOP`,
//! not only the last one (kubeharden never goes through symlinks in paths it manages), and
//! `..` is rejected. `mtime_ms` is a logical clock that ticks once per mutating operation.

use super::{Fs, FsFile, Kind, Meta};
use nix::errno::Errno;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

type Ino = u64;
const ROOT: Ino = 0;

/// One path of [`SimFs::snapshot_tree`]: `bytes` is the file data or the symlink target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
struct FileState {
    data: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

#[derive(Debug, Clone)]
struct FileNode {
    live: FileState,
    durable: FileState,
    /// Byte ranges a failed fsync dropped: they never become durable.
    lost: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct DirNode {
    live: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
    mode: u32,
    mtime: i64,
}

#[derive(Debug, Clone)]
enum Node {
    File(FileNode),
    Dir(DirNode),
    Symlink(PathBuf),
}

#[derive(Debug, Clone)]
struct State {
    nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    clock: i64,
    ops: u64,
    fail_after: Option<u64>,
    syncs: u64,
    failing_syncs: BTreeSet<u64>,
}

/// The in-memory file system. Clones share the same state.
#[derive(Debug, Clone)]
pub struct SimFs(Arc<Mutex<State>>);

fn os(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
}

/// splitmix64: tiny, deterministic, good enough to pick torn-write cut points.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The names of an absolute path; `..` is refused so lookups never leave the tree.
fn names(path: &Path) -> io::Result<Vec<String>> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad path {path:?}"));
    if !path.is_absolute() {
        return Err(invalid());
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s.to_str().ok_or_else(invalid)?.to_owned()),
            Component::ParentDir | Component::Prefix(_) => return Err(invalid()),
        }
    }
    Ok(out)
}

/// The live data as it would land on disk: the ranges a failed fsync dropped read back as
/// the old durable bytes, or zeros past the old end.
fn masked_live(f: &FileNode) -> Vec<u8> {
    let mut data = f.live.data.clone();
    for &(start, end) in &f.lost {
        let end = end.min(data.len());
        for (i, byte) in data.iter_mut().enumerate().take(end).skip(start) {
            *byte = f.durable.data.get(i).copied().unwrap_or(0);
        }
    }
    data
}

fn make_durable(f: &mut FileNode) {
    let data = masked_live(f);
    let live = f.live.clone();
    f.durable = FileState { data, ..live };
}

/// What of a file is left after the power cut; `rng` is `None` for the exact variant.
fn survivor(f: &FileNode, rng: Option<&mut SplitMix64>) -> FileState {
    let mut state = f.durable.clone();
    let live = masked_live(f);
    let old_len = state.data.len();
    if let Some(rng) = rng {
        if live.len() > old_len && live.starts_with(&state.data) {
            let ext = live.len() - old_len;
            let keep = match rng.next_u64() % 3 {
                0 => 0,
                1 => ext,
                _ => (rng.next_u64() % (ext as u64 + 1)) as usize,
            };
            state.data.extend_from_slice(&live[old_len..old_len + keep]);
        }
    }
    state
}

impl State {
    fn check_power(&self) -> io::Result<()> {
        match self.fail_after {
            Some(n) if self.ops >= n => Err(power_loss()),
            _ => Ok(()),
        }
    }

    /// Called first by every mutating operation: it counts even if it then fails on a
    /// missing path, so the count of a scenario does not depend on the cut point.
    fn begin_mutation(&mut self) -> io::Result<i64> {
        self.check_power()?;
        self.ops += 1;
        self.clock += 1;
        Ok(self.clock)
    }

    fn dir(&self, ino: Ino) -> io::Result<&DirNode> {
        match &self.nodes[&ino] {
            Node::Dir(d) => Ok(d),
            Node::Symlink(_) => Err(os(Errno::ELOOP)),
            Node::File(_) => Err(os(Errno::ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => d,
            _ => unreachable!("inode {ino} was resolved as a directory"),
        }
    }

    /// A regular file, or the error `open(O_NOFOLLOW)` would give.
    fn file_mut(&mut self, ino: Ino) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Symlink(_)) => Err(os(Errno::ELOOP)),
            _ => Err(os(Errno::EISDIR)),
        }
    }

    /// The live entry `name` of directory `dir`.
    fn child(&self, dir: Ino, name: &str) -> io::Result<Ino> {
        let entry = self.dir(dir)?.live.get(name).copied();
        entry.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no entry {name:?}")))
    }

    fn resolve_dir(&self, names: &[String]) -> io::Result<Ino> {
        let mut ino = ROOT;
        for name in names {
            ino = self.child(ino, name)?;
        }
        self.dir(ino)?;
        Ok(ino)
    }

    /// The parent directory of `path` and the last name.
    fn parent_of(&self, path: &Path) -> io::Result<(Ino, String)> {
        let mut names = names(path)?;
        let last = names.pop().ok_or_else(|| os(Errno::EBUSY))?;
        Ok((self.resolve_dir(&names)?, last))
    }

    /// `lstat`-style lookup: the last component is not followed.
    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        if names(path)?.is_empty() {
            return Ok(ROOT);
        }
        let (parent, name) = self.parent_of(path)?;
        self.child(parent, &name)
    }

    /// Link a fresh inode at `path`, live only, or also durable (test setup).
    fn link_new(&mut self, path: &Path, node: Node, durable: bool, now: i64) -> io::Result<Ino> {
        let (parent, name) = self.parent_of(path)?;
        if self.dir(parent)?.live.contains_key(&name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        let dir = self.dir_mut(parent);
        dir.live.insert(name.clone(), ino);
        if durable {
            dir.durable.insert(name, ino);
        }
        dir.mtime = now;
        Ok(ino)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match &self.nodes[&self.lookup(path)?] {
            Node::File(f) => Ok(f.live.data.clone()),
            Node::Dir(_) => Err(os(Errno::EISDIR)),
            Node::Symlink(_) => Err(os(Errno::ELOOP)),
        }
    }
}

fn new_file(data: Vec<u8>, mode: u32, uid: u32, gid: u32, now: i64) -> Node {
    let mode = mode & 0o7777;
    settled_file(FileState {
        data,
        mode,
        uid,
        gid,
        mtime: now,
    })
}

/// A file whose live and durable states are the same.
fn settled_file(state: FileState) -> Node {
    let live = state.clone();
    Node::File(FileNode {
        live,
        durable: state,
        lost: Vec::new(),
    })
}

fn new_dir(entries: BTreeMap<String, Ino>, mode: u32, now: i64) -> Node {
    let (durable, mode) = (entries.clone(), mode & 0o7777);
    Node::Dir(DirNode {
        live: entries,
        durable,
        mode,
        mtime: now,
    })
}

/// The live view of an inode and its mtime (directories and symlinks belong to root).
fn describe(node: &Node) -> (Entry, i64) {
    let (kind, bytes, mode, uid, gid, mtime) = match node {
        Node::File(f) => {
            let s = &f.live;
            (Kind::File, s.data.clone(), s.mode, s.uid, s.gid, s.mtime)
        }
        Node::Dir(d) => (Kind::Dir, Vec::new(), d.mode, 0, 0, d.mtime),
        Node::Symlink(t) => {
            let target = t.as_os_str().as_encoded_bytes().to_vec();
            (Kind::Symlink, target, 0o777, 0, 0, 0)
        }
    };
    (
        Entry {
            kind,
            bytes,
            mode,
            uid,
            gid,
        },
        mtime,
    )
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty file system: only the root directory, mode 0755, durable.
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, new_dir(BTreeMap::new(), 0o755, 0));
        Self::from_state(nodes, 1, 0)
    }

    fn from_state(nodes: BTreeMap<Ino, Node>, next_ino: Ino, clock: i64) -> Self {
        SimFs(Arc::new(Mutex::new(State {
            nodes,
            next_ino,
            clock,
            ops: 0,
            fail_after: None,
            syncs: 0,
            failing_syncs: BTreeSet::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the assertions after it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cut the power once `n` mutating operations have been done in all, as counted by
    /// [`SimFs::ops_done`] (`None`: never).
    pub fn set_fail_after(&self, n: Option<u64>) {
        self.lock().fail_after = n;
    }

    /// Mutating operations attempted so far (the helpers do not count).
    pub fn ops_done(&self) -> u64 {
        self.lock().ops
    }

    /// File fsyncs attempted so far (counted as [`SimFs::fail_sync_on`] counts them).
    pub fn syncs_done(&self) -> u64 {
        self.lock().syncs
    }

    /// Make the `n`-th file fsync (1-based, counted from creation) fail with `EIO`.
    pub fn fail_sync_on(&self, n: u64) {
        self.lock().failing_syncs.insert(n);
    }

    /// What survives the power cut, with torn un-synced appends chosen from `rng_seed`.
    /// The new file system has its power back: no limit, no failing fsync, counters at 0.
    pub fn power_cut(&self, rng_seed: u64) -> SimFs {
        self.cut(Some(SplitMix64(rng_seed)))
    }

    /// An independent copy of the file system as it is now, durable and live state alike (the
    /// process ended, the power stayed on): to run several recoveries from the same state.
    pub fn fork(&self) -> SimFs {
        let mut st = self.lock().clone();
        st.fail_after = None;
        st.failing_syncs.clear();
        SimFs(Arc::new(Mutex::new(st)))
    }

    /// What survives the power cut if not a single un-synced byte reached the disk.
    pub fn power_cut_exact(&self) -> SimFs {
        self.cut(None)
    }

    fn cut(&self, mut rng: Option<SplitMix64>) -> SimFs {
        let st = self.lock();
        let mut nodes = BTreeMap::new();
        let mut seen = BTreeSet::from([ROOT]);
        let mut queue = VecDeque::from([ROOT]);
        // Breadth-first over durable entries, in name order, so a seed always tears the same way.
        while let Some(ino) = queue.pop_front() {
            let node = match &st.nodes[&ino] {
                Node::Dir(d) => {
                    let mut entries = BTreeMap::new();
                    for (name, &child) in &d.durable {
                        let first_visit = seen.insert(child);
                        if first_visit {
                            queue.push_back(child);
                        } else if matches!(st.nodes[&child], Node::Dir(_)) {
                            continue; // a second name of a directory: keep the tree acyclic
                        }
                        entries.insert(name.clone(), child);
                    }
                    new_dir(entries, d.mode, d.mtime)
                }
                Node::File(f) => settled_file(survivor(f, rng.as_mut())),
                Node::Symlink(t) => Node::Symlink(t.clone()),
            };
            nodes.insert(ino, node);
        }
        SimFs::from_state(nodes, st.next_ino, st.clock)
    }

    /// Test setup: create every missing directory of `path`, durable.
    pub fn mkdir_p(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        let mut at = PathBuf::from("/");
        for name in names(path)? {
            at.push(name);
            match st.lookup(&at) {
                Ok(ino) => {
                    st.dir(ino)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let now = st.clock;
                    st.link_new(&at, new_dir(BTreeMap::new(), mode, now), true, now)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Test setup: a file with these contents and metadata, name and data durable (parents
    /// are created with mode 0755; an existing file of that name is replaced).
    pub fn write_file_durable(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            self.mkdir_p(parent, 0o755)?;
        }
        let mut st = self.lock();
        let (parent, name) = st.parent_of(path)?;
        if let Some(&old) = st.dir(parent)?.live.get(&name) {
            st.file_mut(old)?;
            let dir = st.dir_mut(parent);
            dir.live.remove(&name);
            dir.durable.remove(&name);
        }
        let now = st.clock;
        st.link_new(
            path,
            new_file(bytes.to_vec(), mode, uid, gid, now),
            true,
            now,
        )?;
        Ok(())
    }

    /// Test setup: a durable symlink at `path` pointing to `target`.
    pub fn add_symlink(&self, path: &Path, target: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let now = st.clock;
        st.link_new(path, Node::Symlink(target.into()), true, now)?;
        Ok(())
    }

    /// Read a file's live data even after the simulated power loss (for assertions).
    pub fn read_live(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.lock().read(path)
    }

    /// Every path below the root in the live view, with what it holds.
    pub fn snapshot_tree(&self) -> BTreeMap<PathBuf, Entry> {
        let st = self.lock();
        let mut out = BTreeMap::new();
        let mut stack = vec![(PathBuf::from("/"), ROOT)];
        while let Some((path, ino)) = stack.pop() {
            let Node::Dir(d) = &st.nodes[&ino] else {
                continue;
            };
            for (name, &child) in &d.live {
                let p = path.join(name);
                if let Node::Dir(_) = st.nodes[&child] {
                    stack.push((p.clone(), child));
                }
                out.insert(p, describe(&st.nodes[&child]).0);
            }
        }
        out
    }
}

/// A handle on an inode, not a name: a rename after opening still writes the same file.
struct SimFile {
    fs: SimFs,
    ino: Ino,
    /// `None` for `O_APPEND`, else the write offset.
    pos: Option<usize>,
}

impl FsFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut st = self.fs.lock();
        let now = st.begin_mutation()?;
        let f = st.file_mut(self.ino)?;
        let data = &mut f.live.data;
        let at = self.pos.unwrap_or(data.len());
        if data.len() < at + buf.len() {
            data.resize(at + buf.len(), 0); // past a truncation, POSIX leaves a hole of zeros
        }
        data[at..at + buf.len()].copy_from_slice(buf);
        if let Some(pos) = &mut self.pos {
            *pos += buf.len();
        }
        f.live.mtime = now;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.begin_mutation()?;
        st.syncs += 1;
        let fails = st.failing_syncs.contains(&st.syncs);
        let f = st.file_mut(self.ino)?;
        if fails {
            // Whatever was not durable yet is dropped for good (the page cache marks it clean).
            let live = &f.live.data;
            let same = live
                .iter()
                .zip(&f.durable.data)
                .take_while(|(a, b)| a == b)
                .count();
            if same < live.len() {
                f.lost.push((same, live.len()));
            }
            return Err(os(Errno::EIO));
        }
        make_durable(f);
        Ok(())
    }

    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.begin_mutation()?;
        st.file_mut(self.ino)?.live.mode = mode & 0o7777;
        Ok(())
    }

    fn set_owner(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.begin_mutation()?;
        let f = st.file_mut(self.ino)?;
        (f.live.uid, f.live.gid) = (uid, gid);
        Ok(())
    }
}

impl Fs for SimFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        st.check_power()?;
        st.read(path)
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let st = self.lock();
        st.check_power()?;
        let (e, mtime_ms) = describe(&st.nodes[&st.lookup(path)?]);
        let (kind, len, mode, uid, gid) = (e.kind, e.bytes.len() as u64, e.mode, e.uid, e.gid);
        Ok(Meta {
            kind,
            len,
            mode,
            uid,
            gid,
            mtime_ms,
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        st.check_power()?;
        let ino = st.resolve_dir(&names(dir)?)?;
        Ok(st.dir(ino)?.live.keys().cloned().collect())
    }

    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        let now = st.begin_mutation()?;
        st.link_new(path, new_dir(BTreeMap::new(), mode, now), false, now)?;
        Ok(())
    }

    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn FsFile>> {
        let mut st = self.lock();
        let now = st.begin_mutation()?;
        let ino = st.link_new(path, new_file(Vec::new(), mode, 0, 0, now), false, now)?;
        let fs = self.clone();
        Ok(Box::new(SimFile {
            fs,
            ino,
            pos: Some(0),
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut st = self.lock();
        st.begin_mutation()?;
        let ino = st.lookup(path)?;
        st.file_mut(ino)?;
        let fs = self.clone();
        Ok(Box::new(SimFile { fs, ino, pos: None }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let now = st.begin_mutation()?;
        let (from_dir, from_name) = st.parent_of(from)?;
        let ino = st.child(from_dir, &from_name)?;
        let (to_dir, to_name) = st.parent_of(to)?;
        let source_is_dir = matches!(st.nodes[&ino], Node::Dir(_));
        if let Some(&target) = st.dir(to_dir)?.live.get(&to_name) {
            if target == ino {
                return Ok(()); // POSIX: renaming a file onto itself does nothing
            }
            match (&st.nodes[&target], source_is_dir) {
                (Node::Dir(_), _) => return Err(os(Errno::EISDIR)),
                (_, true) => return Err(os(Errno::ENOTDIR)),
                _ => {}
            }
        }
        if source_is_dir && names(to)?.starts_with(&names(from)?) {
            return Err(os(Errno::EINVAL)); // a directory cannot move into itself
        }
        let src = st.dir_mut(from_dir);
        src.live.remove(&from_name);
        src.mtime = now;
        let dst = st.dir_mut(to_dir);
        dst.live.insert(to_name, ino);
        dst.mtime = now;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let now = st.begin_mutation()?;
        let (parent, name) = st.parent_of(path)?;
        let ino = st.child(parent, &name)?;
        if matches!(st.nodes[&ino], Node::Dir(_)) {
            return Err(os(Errno::EISDIR));
        }
        let dir = st.dir_mut(parent);
        dir.live.remove(&name);
        dir.mtime = now;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.begin_mutation()?;
        let ino = st.resolve_dir(&names(dir)?)?;
        let d = st.dir_mut(ino);
        d.durable = d.live.clone();
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        let now = st.begin_mutation()?;
        let ino = st.lookup(path)?;
        let f = st.file_mut(ino)?;
        let len = len as usize;
        f.live.data.resize(len, 0);
        f.live.mtime = now;
        // Bytes cut away cannot be lost any more; what is written there later is new data.
        f.lost.retain(|&(start, _)| start < len);
        for range in &mut f.lost {
            range.1 = range.1.min(len);
        }
        make_durable(f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    /// A fresh file system with a durable, empty `/d`.
    fn setup() -> SimFs {
        let fs = SimFs::new();
        fs.mkdir_p(p("/d"), 0o755).unwrap();
        fs
    }

    fn write_new(fs: &SimFs, path: &str, bytes: &[u8], sync: bool) {
        let mut f = fs.create_new(p(path), 0o600).unwrap();
        f.write_all(bytes).unwrap();
        if sync {
            f.sync().unwrap();
        }
    }

    #[test]
    fn unsynced_data_is_lost() {
        let fs = setup();
        fs.write_file_durable(p("/d/old"), b"abc", 0o644, 1, 2)
            .unwrap();
        let mut f = fs.open_append(p("/d/old")).unwrap();
        f.write_all(b"def").unwrap();
        f.set_mode(0o600).unwrap();
        write_new(&fs, "/d/new", b"xyz", false);
        fs.sync_dir(p("/d")).unwrap();
        assert_eq!(fs.read(p("/d/old")).unwrap(), b"abcdef");

        let after = fs.power_cut_exact();
        assert_eq!(after.read(p("/d/old")).unwrap(), b"abc");
        assert_eq!(after.metadata(p("/d/old")).unwrap().mode, 0o644);
        // The name was synced, the data was not: the file is there, empty.
        assert_eq!(after.read(p("/d/new")).unwrap(), b"");
    }

    #[test]
    fn synced_data_and_metadata_survive() {
        let fs = setup();
        let mut f = fs.create_new(p("/d/f"), 0o600).unwrap();
        f.write_all(b"hello").unwrap();
        f.set_owner(7, 8).unwrap();
        f.set_mode(0o640).unwrap();
        f.sync().unwrap();
        fs.sync_dir(p("/d")).unwrap();
        for seed in 0..20 {
            let tree = fs.power_cut(seed).snapshot_tree();
            let e = &tree[p("/d/f")];
            assert_eq!((e.kind, e.bytes.as_slice()), (Kind::File, &b"hello"[..]));
            assert_eq!((e.mode, e.uid, e.gid), (0o640, 7, 8));
        }
    }

    #[test]
    fn synced_file_without_dir_sync_disappears() {
        let fs = setup();
        write_new(&fs, "/d/f", b"data", true);
        fs.create_dir(p("/d/sub"), 0o700).unwrap();
        for seed in 0..20 {
            let after = fs.power_cut(seed);
            assert_eq!(after.list_dir(p("/d")).unwrap(), Vec::<String>::new());
            assert_eq!(
                after.read(p("/d/f")).unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
        }
    }

    #[test]
    fn rename_is_undone_without_sync_dir_and_kept_with_it() {
        let fs = setup();
        fs.write_file_durable(p("/d/x"), b"X", 0o644, 0, 0).unwrap();
        fs.write_file_durable(p("/d/y"), b"old y", 0o644, 0, 0)
            .unwrap();
        fs.rename(p("/d/x"), p("/d/y")).unwrap();
        let undone = fs.power_cut_exact();
        assert_eq!(undone.read(p("/d/x")).unwrap(), b"X");
        assert_eq!(undone.read(p("/d/y")).unwrap(), b"old y");

        let fs = setup();
        fs.write_file_durable(p("/d/x"), b"X", 0o644, 0, 0).unwrap();
        fs.write_file_durable(p("/d/y"), b"old y", 0o644, 0, 0)
            .unwrap();
        fs.rename(p("/d/x"), p("/d/y")).unwrap();
        fs.sync_dir(p("/d")).unwrap();
        let kept = fs.power_cut_exact();
        assert_eq!(kept.list_dir(p("/d")).unwrap(), vec!["y".to_string()]);
        assert_eq!(kept.read(p("/d/y")).unwrap(), b"X");
    }

    #[test]
    fn unsynced_remove_comes_back() {
        let fs = setup();
        fs.write_file_durable(p("/d/x"), b"X", 0o644, 0, 0).unwrap();
        fs.remove_file(p("/d/x")).unwrap();
        assert_eq!(fs.power_cut_exact().read(p("/d/x")).unwrap(), b"X");
        fs.sync_dir(p("/d")).unwrap();
        assert!(fs.power_cut_exact().metadata(p("/d/x")).is_err());
    }

    #[test]
    fn torn_append_is_a_prefix_of_live_and_keeps_durable() {
        let fs = setup();
        fs.write_file_durable(p("/d/j"), b"abc", 0o600, 0, 0)
            .unwrap();
        let mut f = fs.open_append(p("/d/j")).unwrap();
        f.write_all(b"defghij").unwrap();
        let live = fs.read_live(p("/d/j")).unwrap();
        let mut lens = BTreeSet::new();
        for seed in 0..200 {
            let got = fs.power_cut(seed).read(p("/d/j")).unwrap();
            assert!(live.starts_with(&got) && got.starts_with(b"abc"), "{got:?}");
            lens.insert(got.len());
        }
        // Nothing, everything and something in between all happen.
        assert!(
            lens.contains(&3) && lens.contains(&10) && lens.len() > 2,
            "{lens:?}"
        );
        assert_eq!(
            fs.power_cut(5).snapshot_tree(),
            fs.power_cut(5).snapshot_tree()
        );
        // An overwrite in place is not an extension: it reverts to the durable data.
        let fs = setup();
        let mut f = fs.create_new(p("/d/o"), 0o600).unwrap();
        f.write_all(b"abc").unwrap();
        let mut g = fs.open_append(p("/d/o")).unwrap();
        g.write_all(b"def").unwrap();
        g.sync().unwrap();
        f.write_all(b"XY").unwrap();
        assert_eq!(fs.read(p("/d/o")).unwrap(), b"abcXYf");
        fs.sync_dir(p("/d")).unwrap();
        for seed in 0..20 {
            assert_eq!(fs.power_cut(seed).read(p("/d/o")).unwrap(), b"abcdef");
        }
    }

    /// The scenario the engine tests run: replace a file atomically, then cut at every step.
    fn replace(fs: &SimFs) -> io::Result<()> {
        let mut f = fs.create_new(p("/d/f.tmp"), 0o600)?;
        f.write_all(b"new ")?;
        f.write_all(b"contents")?;
        f.sync()?;
        fs.rename(p("/d/f.tmp"), p("/d/f"))?;
        fs.sync_dir(p("/d"))
    }

    #[test]
    fn fail_after_stops_everything_and_cuts_consistently() {
        let count = setup();
        count
            .write_file_durable(p("/d/f"), b"old", 0o600, 0, 0)
            .unwrap();
        replace(&count).unwrap();
        let total = count.ops_done();
        assert_eq!(total, 6);
        for k in 0..=total {
            let fs = setup();
            fs.write_file_durable(p("/d/f"), b"old", 0o600, 0, 0)
                .unwrap();
            fs.set_fail_after(Some(k));
            let result = replace(&fs);
            assert_eq!(result.is_ok(), k == total);
            assert_eq!(fs.ops_done(), k);
            if k < total {
                let err = fs.read(p("/d/f")).unwrap_err();
                assert_eq!(err.to_string(), "simulated power loss");
                assert!(fs.metadata(p("/d")).is_err() && fs.list_dir(p("/d")).is_err());
                assert!(fs.create_dir(p("/d/z"), 0o700).is_err());
                assert_eq!(fs.ops_done(), k);
            }
            for seed in 0..10 {
                let got = fs.power_cut(seed).read(p("/d/f")).unwrap();
                assert!(got == b"old" || got == b"new contents", "k={k}: {got:?}");
                if k == total {
                    assert_eq!(got, b"new contents");
                }
            }
        }
    }

    #[test]
    fn failed_fsync_data_never_survives() {
        let fs = setup();
        fs.fail_sync_on(1);
        let mut f = fs.create_new(p("/d/f"), 0o600).unwrap();
        f.write_all(b"lost").unwrap();
        assert_eq!(
            f.sync().unwrap_err().raw_os_error(),
            Some(Errno::EIO as i32)
        );
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"lost"); // still live
        f.write_all(b"kept").unwrap();
        f.sync().unwrap();
        fs.sync_dir(p("/d")).unwrap();
        assert_eq!(
            fs.power_cut_exact().read(p("/d/f")).unwrap(),
            b"\0\0\0\0kept"
        );
        for seed in 0..50 {
            let got = fs.power_cut(seed).read(p("/d/f")).unwrap();
            assert!(!got.windows(4).any(|w| w == b"lost"), "{got:?}");
        }
        // Truncating the dropped bytes away lets the file be written durably again.
        fs.truncate(p("/d/f"), 0).unwrap();
        let mut g = fs.open_append(p("/d/f")).unwrap();
        g.write_all(b"again").unwrap();
        g.sync().unwrap();
        assert_eq!(fs.power_cut_exact().read(p("/d/f")).unwrap(), b"again");
    }

    #[test]
    fn posix_errors_and_symlinks() {
        let fs = setup();
        fs.add_symlink(p("/d/link"), p("/etc/passwd")).unwrap();
        let eloop = Some(Errno::ELOOP as i32);
        assert_eq!(fs.read(p("/d/link")).unwrap_err().raw_os_error(), eloop);
        assert_eq!(
            fs.open_append(p("/d/link")).err().unwrap().raw_os_error(),
            eloop
        );
        assert_eq!(fs.read(p("/d/link/x")).unwrap_err().raw_os_error(), eloop);
        assert_eq!(fs.metadata(p("/d/link")).unwrap().kind, Kind::Symlink);
        let exists = fs.create_new(p("/d/link"), 0o600).err().unwrap();
        assert_eq!(exists.kind(), io::ErrorKind::AlreadyExists);
        let missing = fs.create_new(p("/nope/f"), 0o600).err().unwrap();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            fs.read(p("/d/none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs.create_dir(p("/d/sub"), 0o700).unwrap();
        assert_eq!(
            fs.create_dir(p("/d/sub"), 0o700).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs.write_file_durable(p("/d/f"), b"1", 0o644, 0, 0).unwrap();
        assert!(fs.rename(p("/d/f"), p("/d/sub")).is_err());
        assert!(fs.rename(p("/d/sub"), p("/d/sub/inner")).is_err());
        assert!(fs.remove_file(p("/d/sub")).is_err());
        assert_eq!(fs.metadata(p("/d/sub")).unwrap().mode, 0o700);
        let mut names = fs.list_dir(p("/d")).unwrap();
        names.sort();
        assert_eq!(names, ["f", "link", "sub"]);
    }

    #[test]
    fn handles_follow_the_inode_and_clones_share_state() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SimFs>();
        let fs = setup();
        let other = fs.clone();
        let mut f = fs.create_new(p("/d/a"), 0o600).unwrap();
        other.rename(p("/d/a"), p("/d/b")).unwrap();
        f.write_all(b"via handle").unwrap();
        assert_eq!(fs.read(p("/d/b")).unwrap(), b"via handle");
        assert_eq!(fs.ops_done(), 3);
        assert_eq!(other.ops_done(), 3);
    }
}
