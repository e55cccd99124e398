//! The filesystem provider: the only code in alos that touches workspace files.
//!
//! The kernel decides *whether* an operation is allowed; this module makes sure it
//! physically cannot reach anything else, so it holds even if the kernel is wrong.
//!
//! - Every access goes through a `cap_std::fs::Dir` for the workspace root
//!   (`openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, or cap-std's
//!   component-by-component fallback). `..`, absolute symlinks, symlinks that
//!   climb out, and symlinks swapped in mid-operation all fail as [`FsError::Escapes`];
//!   no path string is ever checked and then reopened.
//! - Operations on a path's last component (create, replace, remove, lstat) are
//!   done by name on an already-opened parent directory handle.
//! - Reserved directories (the alos state dir) are refused twice: lexically on the
//!   [`WsPath`], and physically on the very handle the operation then uses (see
//!   [`Workspace::confine`]), so a planted or swapped symlink cannot redirect into them.
//! - Every operation takes a [`Guard`]: the caller's own say over the *physical*
//!   workspace path it is about to touch, computed from the opened handle after
//!   opening and before any effect. The kernel uses it to re-decide its policy on
//!   where a symlink really leads (a capability on `docs/**` must not read
//!   `secrets/key` through `docs/x -> ../secrets/key`). A refusal means nothing was
//!   done ([`FsError::Denied`]); the effect then happens on that same handle, so a
//!   link swapped in after the guard cannot redirect it.
//!
//! Symlinks at the final component: reads follow them (within the workspace);
//! `write(Replace)` replaces the link itself with a regular file (it never writes
//! through it); `write(Append)` refuses; `stat` reports the link; `remove` removes
//! the link. Linux only (the physical check reads `/proc/self/fd`).

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, FileType, Metadata, MetadataExt, OpenOptions, OpenOptionsExt, Permissions};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest workspace-relative path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single path segment accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// The caller's check on what an operation physically touches, called with the
/// workspace-relative real path (symlinks resolved, read from the opened handle):
/// the opened file for `read`; the opened directory for `list`; the opened parent
/// directory plus the final name for `write`, `stat`, `remove` and `mkdir`; and, for
/// a recursive `mkdir`, each level it creates. It is called even when the real path
/// is the path as written. `Err(reason)` stops the operation before any effect, as
/// [`FsError::Denied`].
pub type Guard<'a> = &'a dyn Fn(&WsPath) -> Result<(), String>;

/// Why a user-supplied path was rejected by [`WsPath::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("paths are relative to the workspace; got absolute path {0:?}")]
    Absolute(String),
    #[error("path {input:?} climbs above the workspace root (resolved from {cwd})")]
    AboveRoot { input: String, cwd: WsPath },
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {preview:?} is {len} bytes long; the limit is {MAX_PATH_BYTES} bytes")]
    TooLong { preview: String, len: usize },
    #[error(
        "path segment {preview:?} is {len} bytes long; the limit is {MAX_SEGMENT_BYTES} bytes per segment"
    )]
    SegmentTooLong { preview: String, len: usize },
}

impl PathError {
    /// The path names something outside the workspace (absolute, or `..` above the
    /// root), as opposed to being malformed.
    pub fn is_escape(&self) -> bool {
        matches!(self, PathError::Absolute(_) | PathError::AboveRoot { .. })
    }
}

/// A normalized workspace-relative path: `/`-separated segments, none empty, `.` or
/// `..`. The root is the empty path (displayed as `.`). On Linux a backslash is an
/// ordinary character in a file name, so it is kept literally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WsPath(String);

impl WsPath {
    /// The workspace root.
    pub fn root() -> WsPath {
        WsPath(String::new())
    }

    /// Joins `input` onto `cwd` and normalizes lexically: `.` and empty segments are
    /// dropped, `a/../b` becomes `b`. An empty input means `cwd` itself. A trailing
    /// `/` is dropped (it does not require a directory). `..` is lexical: `link/..`
    /// is the directory holding `link`, wherever `link` points.
    pub fn resolve(cwd: &WsPath, input: &str) -> Result<WsPath, PathError> {
        if input.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong {
                preview: preview(input),
                len: input.len(),
            });
        }
        if input.contains('\0') {
            return Err(PathError::Nul(input.to_string()));
        }
        if input.starts_with('/') {
            return Err(PathError::Absolute(input.to_string()));
        }
        let mut segments: Vec<&str> = cwd.segments().collect();
        for segment in input.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot {
                            input: input.to_string(),
                            cwd: cwd.clone(),
                        });
                    }
                }
                name if name.len() > MAX_SEGMENT_BYTES => {
                    return Err(PathError::SegmentTooLong {
                        preview: preview(name),
                        len: name.len(),
                    })
                }
                name => segments.push(name),
            }
        }
        let joined = segments.join("/");
        if joined.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong {
                preview: preview(&joined),
                len: joined.len(),
            });
        }
        Ok(WsPath(joined))
    }

    /// The normalized path; `""` for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<WsPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((parent, _)) => WsPath(parent.to_string()),
            None => WsPath::root(),
        })
    }

    /// The last segment; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        Some(self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, name)| name))
    }

    /// `WsPath::resolve(self, input)`.
    pub fn join(&self, input: &str) -> Result<WsPath, PathError> {
        WsPath::resolve(self, input)
    }

    /// Segment-wise prefix test: `a/b` starts with `a` but `ab` does not.
    pub fn starts_with(&self, base: &WsPath) -> bool {
        base.is_root()
            || (self.0.starts_with(&base.0)
                && (self.0.len() == base.0.len() || self.0.as_bytes()[base.0.len()] == b'/'))
    }

    /// The segments from the root down; empty for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// Appends already-validated segments (one, or several joined by `/`).
    fn child(&self, name: &str) -> WsPath {
        if self.is_root() {
            WsPath(name.to_string())
        } else {
            WsPath(format!("{}/{}", self.0, name))
        }
    }
}

/// The root shows as `.`; control characters are escaped so a file name cannot
/// rewrite the terminal an error message is shown on. Use `as_str` for the exact path.
impl fmt::Display for WsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for WsPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Deserializing re-validates: a journal or a request cannot smuggle in `..` or `/`.
impl<'de> Deserialize<'de> for WsPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        WsPath::resolve(&WsPath::root(), &raw).map_err(serde::de::Error::custom)
    }
}

fn preview(s: &str) -> String {
    const KEEP: usize = 64;
    if s.len() <= KEEP {
        return s.to_string();
    }
    let mut end = KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What is at a path, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket or device node.
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Kind {
        if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }
}

/// One directory entry. Names that are not UTF-8 are shown lossily (U+FFFD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    /// Milliseconds since the Unix epoch; `None` if unavailable or before 1970.
    pub modified_ms: Option<u64>,
    /// No write permission bit is set.
    pub readonly: bool,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        Stat {
            kind: Kind::of(meta.file_type()),
            size: meta.len(),
            modified_ms: meta
                .modified()
                .ok()
                .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            readonly: meta.permissions().readonly(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Atomic: temp file in the same directory, write, fsync, rename over the
    /// target, fsync the directory. Readers see the old or the new content, never a
    /// mix; on error the target is untouched and the temp file is removed. A final
    /// symlink is replaced by a regular file (never written through). The file mode
    /// of an existing target is kept.
    Replace,
    /// `O_APPEND` (created if missing): each `write(2)` lands at the current end of
    /// file, so concurrent appenders never overwrite each other, but a large append
    /// may be split over several writes and a crash can leave a prefix of it. Data
    /// is fsynced before returning. A final symlink is refused.
    Append,
}

/// A failed workspace operation; every message names the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot {op} {path}: {}", missing_text(.path, .missing))]
    NotFound {
        op: &'static str,
        path: WsPath,
        /// The path found missing: `path` itself or the parent directory it needs.
        missing: WsPath,
    },
    #[error("cannot {op} {path}: it already exists")]
    AlreadyExists { op: &'static str, path: WsPath },
    #[error("cannot {op} {path}: {at} is not a directory")]
    NotADirectory {
        op: &'static str,
        path: WsPath,
        /// The path that had to be a directory.
        at: WsPath,
    },
    #[error("cannot {op} {path}: it is a directory")]
    IsADirectory { op: &'static str, path: WsPath },
    #[error("cannot {op} {path}: the directory is not empty (remove it recursively to delete its contents)")]
    NotEmpty { op: &'static str, path: WsPath },
    #[error("cannot {op} {path}: it is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        op: &'static str,
        path: WsPath,
        size: u64,
        limit: u64,
    },
    #[error("cannot {op} {path}: it leads outside the workspace (through a symlink); nothing outside the workspace root is reachable")]
    Escapes { op: &'static str, path: WsPath },
    #[error("cannot {op} {path}: it touches the alos state directory, which is reserved and reachable by no operation")]
    Reserved { op: &'static str, path: WsPath },
    /// The [`Guard`] refused the physical path `real` the operation would touch.
    #[error("cannot {op} {path}: {}", denied_text(.path, .real, .reason))]
    Denied {
        op: &'static str,
        /// The path as written.
        path: WsPath,
        /// What it physically touches (symlinks resolved).
        real: WsPath,
        /// The guard's reason.
        reason: String,
    },
    #[error("cannot {op} {path}: {reason}")]
    Refused {
        op: &'static str,
        path: WsPath,
        reason: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] PathError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: WsPath,
        source: io::Error,
    },
}

fn missing_text(path: &WsPath, missing: &WsPath) -> String {
    if missing == path {
        "it does not exist".to_string()
    } else {
        format!("directory {missing} does not exist")
    }
}

fn denied_text(path: &WsPath, real: &WsPath, reason: &str) -> String {
    if real == path {
        reason.to_string()
    } else {
        format!("it touches {real} (symlinks resolved): {reason}")
    }
}

const NOT_REGULAR: &str = "it is not a regular file (a FIFO, socket or device)";
const READ_ONLY: &str = "the file is read-only";
const FINAL_SYMLINK: &str =
    "it is a symbolic link and appends never follow links; append to the path it points to";
const ROOT: &str = "the workspace root cannot be removed";
const UNNAMEABLE: &str =
    "it resolves through a symlink to a path that is not UTF-8 or is too long, which no capability can name";
/// What `/proc/self/fd` appends to the path of an unlinked file or directory.
const DELETED: &str = " (deleted)";

/// Maps an io error from an operation on `path` to an `FsError`; `at` is the path
/// the failing call was about (the parent directory when opening it failed).
fn fail(op: &'static str, path: &WsPath, at: &WsPath, err: io::Error) -> FsError {
    let path = path.clone();
    // cap-std reports escapes as a synthetic PermissionDenied ("a path led outside
    // of the filesystem"); real EACCES carries an errno.
    if err.kind() == io::ErrorKind::PermissionDenied && err.raw_os_error().is_none() {
        return FsError::Escapes { op, path };
    }
    match err.kind() {
        io::ErrorKind::NotFound => FsError::NotFound {
            op,
            path,
            missing: at.clone(),
        },
        io::ErrorKind::AlreadyExists => FsError::AlreadyExists { op, path },
        io::ErrorKind::NotADirectory => FsError::NotADirectory {
            op,
            path,
            at: at.clone(),
        },
        io::ErrorKind::IsADirectory => FsError::IsADirectory { op, path },
        io::ErrorKind::DirectoryNotEmpty => FsError::NotEmpty { op, path },
        _ => FsError::Io {
            op,
            path,
            source: err,
        },
    }
}

fn is_errno(err: &io::Error, errno: rustix::io::Errno) -> bool {
    err.raw_os_error() == Some(errno.raw_os_error())
}

/// Reads never block on a FIFO and never acquire a controlling terminal.
fn open_flags() -> i32 {
    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32
}

/// Where a reserved directory is, recomputed until it exists (its ancestors could
/// still change before then), fixed once it does.
#[derive(Debug)]
struct Reserved {
    /// Absolute and lexically normalized, as the operator configured it.
    configured: PathBuf,
    settled: OnceLock<Location>,
}

#[derive(Debug, Clone)]
struct Location {
    /// The physical path it has or will have (symlinks in existing ancestors resolved).
    real: PathBuf,
    /// Its workspace-relative spellings (configured and physical), if inside the workspace.
    lexical: Vec<WsPath>,
}

impl Reserved {
    fn location(&self, root_lexical: &Path, root_real: &Path) -> Cow<'_, Location> {
        if let Some(found) = self.settled.get() {
            return Cow::Borrowed(found);
        }
        let (found, exists) = locate(&self.configured, root_lexical, root_real);
        if exists {
            Cow::Borrowed(self.settled.get_or_init(|| found))
        } else {
            Cow::Owned(found)
        }
    }
}

/// Host-side resolution of the operator-configured state path. It only locates
/// the reserved directory; no workspace file is ever accessed by path.
fn locate(configured: &Path, root_lexical: &Path, root_real: &Path) -> (Location, bool) {
    let mut real = configured.to_path_buf();
    let mut exists = false;
    for (depth, ancestor) in configured.ancestors().enumerate() {
        if let Ok(canonical) = std::fs::canonicalize(ancestor) {
            let rest = configured.strip_prefix(ancestor).unwrap_or(Path::new(""));
            real = if rest.as_os_str().is_empty() {
                canonical
            } else {
                canonical.join(rest)
            };
            exists = depth == 0;
            break;
        }
    }
    let mut lexical = Vec::new();
    for (path, base) in [
        (configured, root_lexical),
        (real.as_path(), root_real),
        (configured, root_real),
    ] {
        let Ok(rel) = path.strip_prefix(base) else {
            continue;
        };
        let Some(rel) = rel.to_str() else { continue };
        if let Ok(ws) = WsPath::resolve(&WsPath::root(), rel) {
            if !lexical.contains(&ws) {
                lexical.push(ws);
            }
        }
    }
    (Location { real, lexical }, exists)
}

fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The kernel's current path of an open file or directory, read from
/// `/proc/self/fd/N` through a handle that rustix-linux-procfs has verified is
/// a real procfs (not something mounted over it).
fn real_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    let proc_fd = rustix_linux_procfs::proc_self_fd()?;
    let target = rustix::fs::readlinkat(proc_fd, fd.as_raw_fd().to_string(), Vec::new())?;
    Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
}

/// The filesystem provider as the kernel uses it. [`Workspace`] is the host's;
/// [`crate::provider::recording::RecordingFs`] wraps one and records every operation.
/// Each operation hands `guard` the real path it is about to touch (see [`Guard`]).
pub trait FileSystem: Send + Sync {
    fn read(&self, path: &WsPath, max_bytes: u64, guard: Guard<'_>) -> Result<Vec<u8>, FsError>;
    fn write(&self, path: &WsPath, bytes: &[u8], mode: WriteMode, guard: Guard<'_>) -> Result<u64, FsError>;
    fn list(&self, path: &WsPath, guard: Guard<'_>) -> Result<Vec<Entry>, FsError>;
    fn stat(&self, path: &WsPath, guard: Guard<'_>) -> Result<Stat, FsError>;
    fn mkdir(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError>;
    fn remove(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError>;
    /// A handle on a directory (a shell command's working directory).
    fn directory(&self, path: &WsPath, guard: Guard<'_>) -> Result<Dir, FsError>;
}

impl FileSystem for Workspace {
    fn read(&self, path: &WsPath, max_bytes: u64, guard: Guard<'_>) -> Result<Vec<u8>, FsError> {
        Workspace::read(self, path, max_bytes, guard)
    }
    fn write(&self, path: &WsPath, bytes: &[u8], mode: WriteMode, guard: Guard<'_>) -> Result<u64, FsError> {
        Workspace::write(self, path, bytes, mode, guard)
    }
    fn list(&self, path: &WsPath, guard: Guard<'_>) -> Result<Vec<Entry>, FsError> {
        Workspace::list(self, path, guard)
    }
    fn stat(&self, path: &WsPath, guard: Guard<'_>) -> Result<Stat, FsError> {
        Workspace::stat(self, path, guard)
    }
    fn mkdir(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError> {
        Workspace::mkdir(self, path, recursive, guard)
    }
    fn remove(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError> {
        Workspace::remove(self, path, recursive, guard)
    }
    fn directory(&self, path: &WsPath, guard: Guard<'_>) -> Result<Dir, FsError> {
        Workspace::directory(self, path, guard)
    }
}

/// A workspace directory tree, reachable only beneath its root.
#[derive(Debug)]
pub struct Workspace {
    root: Dir,
    root_lexical: PathBuf,
    root_real: PathBuf,
    reserved: Vec<Reserved>,
}

impl Workspace {
    /// Opens the workspace at `root`. `reserved` lists directories no operation may
    /// touch (the alos state dir); they need not exist yet, and relative entries are
    /// taken relative to `root`. A reserved directory that is, or contains, the root
    /// is rejected.
    pub fn open(root: &Path, reserved: &[PathBuf]) -> io::Result<Workspace> {
        // The one use of ambient authority: everything else goes through this handle.
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        let root_lexical = normalize_lexically(&std::path::absolute(root)?);
        let root_real = real_path(dir.as_fd()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot locate workspace {} through /proc/self/fd: {e}", root.display()),
            )
        })?;
        let mut ws = Workspace {
            root: dir,
            root_lexical,
            root_real,
            reserved: Vec::new(),
        };
        for configured in reserved {
            let entry = Reserved {
                configured: normalize_lexically(&ws.root_lexical.join(configured)),
                settled: OnceLock::new(),
            };
            let location = entry.location(&ws.root_lexical, &ws.root_real);
            if ws.root_real.starts_with(&location.real) || location.lexical.iter().any(WsPath::is_root) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "reserved directory {} is the workspace root {} or contains it",
                        configured.display(),
                        root.display()
                    ),
                ));
            }
            drop(location);
            ws.reserved.push(entry);
        }
        Ok(ws)
    }

    /// Reads a whole file, following symlinks that stay inside the workspace. A file
    /// over `max_bytes` (by size, or by growing while read) is `TooLarge`; at most
    /// `max_bytes + 1` bytes are ever read. `guard` gets the opened file's real path.
    pub fn read(&self, path: &WsPath, max_bytes: u64, guard: Guard<'_>) -> Result<Vec<u8>, FsError> {
        const OP: &str = "read";
        self.check_lexical(OP, path, false)?;
        if path.is_root() {
            return Err(FsError::IsADirectory { op: OP, path: path.clone() });
        }
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(open_flags());
        let file = self
            .root
            .open_with(path.as_str(), &options)
            .map_err(|e| self.lookup_failed(OP, path, path, e, false, guard))?;
        // Before anything about the file is looked at: its size or kind is not the
        // caller's to learn if the guard refuses.
        self.confine(OP, path, file.as_fd(), None, false, Some(guard))?;
        let meta = file.metadata().map_err(|e| fail(OP, path, path, e))?;
        if meta.is_dir() {
            return Err(FsError::IsADirectory { op: OP, path: path.clone() });
        }
        if !meta.is_file() {
            return Err(FsError::Refused { op: OP, path: path.clone(), reason: NOT_REGULAR });
        }
        let too_large = |size: u64| FsError::TooLarge {
            op: OP,
            path: path.clone(),
            size,
            limit: max_bytes,
        };
        if meta.len() > max_bytes {
            return Err(too_large(meta.len()));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        let mut reader = file.take(max_bytes.saturating_add(1));
        reader.read_to_end(&mut bytes).map_err(|e| fail(OP, path, path, e))?;
        let read = bytes.len() as u64;
        if read > max_bytes {
            let now = reader.get_ref().metadata().map_or(read, |m| m.len().max(read));
            return Err(too_large(now));
        }
        Ok(bytes)
    }

    /// Writes `bytes` (see [`WriteMode`]) and returns the file's size afterwards. The
    /// parent directory must exist. `guard` gets the opened parent's real path plus the
    /// final name; the write then happens in that parent handle.
    pub fn write(&self, path: &WsPath, bytes: &[u8], mode: WriteMode, guard: Guard<'_>) -> Result<u64, FsError> {
        let op = match mode {
            WriteMode::Replace => "write",
            WriteMode::Append => "append to",
        };
        self.check_lexical(op, path, false)?;
        let Some((parent_path, name)) = split(path) else {
            return Err(FsError::IsADirectory { op, path: path.clone() });
        };
        let parent = self.open_parent(op, path, &parent_path, name, false, guard)?;
        match mode {
            WriteMode::Replace => {
                let keep = match parent.symlink_metadata(name) {
                    Ok(meta) if meta.is_dir() => {
                        return Err(FsError::IsADirectory { op, path: path.clone() })
                    }
                    Ok(meta) if meta.is_file() => {
                        if meta.permissions().readonly() {
                            return Err(FsError::Refused { op, path: path.clone(), reason: READ_ONLY });
                        }
                        Some(meta.permissions())
                    }
                    // A symlink or special file is replaced, never written through.
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(fail(op, path, path, e)),
                };
                replace_atomically(&parent, name, bytes, keep).map_err(|e| fail(op, path, path, e))?;
                Ok(bytes.len() as u64)
            }
            WriteMode::Append => {
                let mut options = OpenOptions::new();
                options.append(true).create(true).custom_flags(open_flags());
                options.follow(FollowSymlinks::No);
                let mut file = parent.open_with(name, &options).map_err(|e| {
                    if is_errno(&e, rustix::io::Errno::LOOP) {
                        FsError::Refused { op, path: path.clone(), reason: FINAL_SYMLINK }
                    } else if is_errno(&e, rustix::io::Errno::NXIO) {
                        FsError::Refused { op, path: path.clone(), reason: NOT_REGULAR }
                    } else {
                        fail(op, path, path, e)
                    }
                })?;
                let meta = file.metadata().map_err(|e| fail(op, path, path, e))?;
                if !meta.is_file() {
                    return Err(FsError::Refused { op, path: path.clone(), reason: NOT_REGULAR });
                }
                if meta.permissions().readonly() {
                    return Err(FsError::Refused { op, path: path.clone(), reason: READ_ONLY });
                }
                file.write_all(bytes).map_err(|e| fail(op, path, path, e))?;
                file.sync_data().map_err(|e| fail(op, path, path, e))?;
                // An empty file may have just been created: make its name durable too.
                if meta.len() == 0 {
                    sync_dir(&parent).map_err(|e| fail(op, path, &parent_path, e))?;
                }
                let size = file.metadata().map_err(|e| fail(op, path, path, e))?.len();
                Ok(size)
            }
        }
    }

    /// Lists a directory (following symlinks inside the workspace), sorted by name.
    /// Entries are described without following them; reserved dirs are left out.
    /// `guard` gets the opened directory's real path.
    pub fn list(&self, path: &WsPath, guard: Guard<'_>) -> Result<Vec<Entry>, FsError> {
        const OP: &str = "list";
        self.check_lexical(OP, path, false)?;
        let dir = self.open_dir(path).map_err(|e| self.lookup_failed(OP, path, path, e, false, guard))?;
        let real = self.confine(OP, path, dir.as_fd(), None, false, Some(guard))?;
        let mut entries = Vec::new();
        for entry in dir.entries().map_err(|e| fail(OP, path, path, e))? {
            let entry = entry.map_err(|e| fail(OP, path, path, e))?;
            let name = entry.file_name();
            if self.hidden(path, &real, &name) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed since readdir returned it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(fail(OP, path, path, e)),
            };
            entries.push(Entry {
                name: name.to_string_lossy().into_owned(),
                kind: Kind::of(meta.file_type()),
                size: meta.len(),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// A handle on the directory at `path`, for an operation that runs inside it (a
    /// shell command's cwd). `guard` gets the opened directory's real path.
    pub fn directory(&self, path: &WsPath, guard: Guard<'_>) -> Result<Dir, FsError> {
        const OP: &str = "enter";
        self.check_lexical(OP, path, false)?;
        let dir = self.open_dir(path).map_err(|e| self.lookup_failed(OP, path, path, e, false, guard))?;
        self.confine(OP, path, dir.as_fd(), None, false, Some(guard))?;
        Ok(dir)
    }

    /// Describes a path without following a final symlink (like `lstat`). `guard` gets
    /// the opened parent's real path plus the final name (the root for the root).
    pub fn stat(&self, path: &WsPath, guard: Guard<'_>) -> Result<Stat, FsError> {
        const OP: &str = "stat";
        self.check_lexical(OP, path, false)?;
        let Some((parent_path, name)) = split(path) else {
            self.confine(OP, path, self.root.as_fd(), None, false, Some(guard))?;
            let meta = self.root.dir_metadata().map_err(|e| fail(OP, path, path, e))?;
            return Ok(Stat::of(&meta));
        };
        let parent = self.open_parent(OP, path, &parent_path, name, false, guard)?;
        let meta = parent.symlink_metadata(name).map_err(|e| fail(OP, path, path, e))?;
        Ok(Stat::of(&meta))
    }

    /// Creates a directory. Without `recursive` the parent must exist and the path
    /// must not; with it, missing ancestors are created and an existing directory is fine.
    /// `guard` gets the opened parent's real path plus the name, for the path itself
    /// and (recursive) for every missing ancestor before it is created.
    pub fn mkdir(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError> {
        const OP: &str = "create directory";
        self.check_lexical(OP, path, false)?;
        if path.is_root() {
            return if recursive {
                Ok(())
            } else {
                Err(FsError::AlreadyExists { op: OP, path: path.clone() })
            };
        }
        if !recursive {
            let (parent_path, name) = split(path).expect("not the root");
            let parent = self.open_parent(OP, path, &parent_path, name, false, guard)?;
            return parent.create_dir(name).map_err(|e| fail(OP, path, path, e));
        }
        // One level at a time, each level checked on the handle it is created in.
        // Levels are opened from the root handle, not the previous level: a link
        // such as `sub/up -> ../other` must resolve as it does for every other
        // operation, not count as escaping `sub`.
        let segments: Vec<&str> = path.segments().collect();
        let mut dir = self.open_dir(&WsPath::root()).map_err(|e| fail(OP, path, path, e))?;
        let mut at = WsPath::root();
        // Physical paths of the levels still to create that the guard has accepted.
        let mut accepted: Vec<WsPath> = Vec::new();
        for (i, &name) in segments.iter().enumerate() {
            let real = self.confine(OP, path, dir.as_fd(), Some(name), false, None)?;
            at = at.child(name);
            // Only levels this call creates (and the path itself) are the guard's to
            // judge: an existing ancestor is merely passed through, as any open does.
            let exists = match dir.symlink_metadata(name) {
                Ok(_) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(fail(OP, path, &at, e)),
            };
            if !exists || i == segments.len() - 1 {
                let target = self.physical(OP, path, dir.as_fd(), &real, Some(name))?;
                // Everything from here down will be created beneath `target`: ask about
                // all of it before creating any, so a refusal leaves nothing behind.
                // Asked again only if a level then turns up elsewhere (a swap).
                if !accepted.contains(&target) {
                    accepted.clear();
                    let mut below = target;
                    for name in &segments[i + 1..] {
                        let next = below.child(name);
                        accepted.push(std::mem::replace(&mut below, next));
                    }
                    accepted.push(below);
                    for level in &accepted {
                        consult(OP, path, level, guard)?;
                    }
                }
            }
            if !exists {
                match dir.create_dir(name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(fail(OP, path, &at, e)),
                }
            }
            dir = self.open_dir(&at).map_err(|e| fail(OP, path, &at, e))?;
        }
        // An existing final symlink may have led somewhere reserved: say so.
        self.confine(OP, path, dir.as_fd(), None, false, None)?;
        Ok(())
    }

    /// Removes a file, symlink (the link, never its target) or directory. A non-empty
    /// directory needs `recursive`; the root and anything containing a reserved
    /// directory are refused. `guard` gets the opened parent's real path plus the name;
    /// the entry is then removed from that parent handle.
    pub fn remove(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError> {
        const OP: &str = "remove";
        let Some((parent_path, name)) = split(path) else {
            return Err(FsError::Refused { op: OP, path: path.clone(), reason: ROOT });
        };
        self.check_lexical(OP, path, recursive)?;
        let parent = self.open_parent(OP, path, &parent_path, name, recursive, guard)?;
        let meta = parent.symlink_metadata(name).map_err(|e| fail(OP, path, path, e))?;
        if !meta.is_dir() {
            return parent.remove_file(name).map_err(|e| fail(OP, path, path, e));
        }
        if !recursive {
            return parent.remove_dir(name).map_err(|e| fail(OP, path, path, e));
        }
        let dir = parent.open_dir_nofollow(name).map_err(|e| fail(OP, path, path, e))?;
        self.confine(OP, path, dir.as_fd(), None, true, None)?;
        // Deletes through the checked handle, never following symlinks inside it.
        dir.remove_open_dir_all().map_err(|e| fail(OP, path, path, e))
    }

    fn open_dir(&self, path: &WsPath) -> io::Result<Dir> {
        if path.is_root() {
            self.root.try_clone()
        } else {
            self.root.open_dir(path.as_str())
        }
    }

    /// Opens `path`'s parent directory and checks it (and `name` in it) physically,
    /// and with `guard`.
    fn open_parent(
        &self,
        op: &'static str,
        path: &WsPath,
        parent_path: &WsPath,
        name: &str,
        contains: bool,
        guard: Guard<'_>,
    ) -> Result<Dir, FsError> {
        let parent =
            self.open_dir(parent_path).map_err(|e| self.lookup_failed(op, path, parent_path, e, contains, guard))?;
        self.confine(op, path, parent.as_fd(), Some(name), contains, Some(guard))?;
        Ok(parent)
    }

    /// The error for an open of `missing` (part of `path`) that failed. A lookup failure
    /// must not tell the caller what is or is not in a place it may not touch (no
    /// probing through a link into the state dir or a denied directory): if the deepest
    /// existing ancestor, plus the names below it, is reserved or refused by `guard`,
    /// that refusal is the answer instead.
    fn lookup_failed(
        &self,
        op: &'static str,
        path: &WsPath,
        missing: &WsPath,
        err: io::Error,
        contains: bool,
        guard: Guard<'_>,
    ) -> FsError {
        let lookup = matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
            || is_errno(&err, rustix::io::Errno::LOOP);
        if lookup {
            let segments: Vec<&str> = path.segments().collect();
            for depth in (0..segments.len()).rev() {
                let ancestor = WsPath(segments[..depth].join("/"));
                let Ok(dir) = self.open_dir(&ancestor) else { continue };
                let below = segments[depth..].join("/");
                return match self.confine(op, path, dir.as_fd(), Some(&below), contains, Some(guard)) {
                    Err(refusal @ (FsError::Reserved { .. } | FsError::Escapes { .. } | FsError::Denied { .. })) => {
                        refusal
                    }
                    _ => fail(op, path, missing, err),
                };
            }
        }
        fail(op, path, missing, err)
    }

    fn check_lexical(&self, op: &'static str, path: &WsPath, contains: bool) -> Result<(), FsError> {
        if self.reserved_lexically(path, contains) {
            return Err(FsError::Reserved { op, path: path.clone() });
        }
        Ok(())
    }

    fn reserved_lexically(&self, path: &WsPath, contains: bool) -> bool {
        self.reserved.iter().any(|r| {
            r.location(&self.root_lexical, &self.root_real)
                .lexical
                .iter()
                .any(|reserved| path.starts_with(reserved) || (contains && reserved.starts_with(path)))
        })
    }

    fn reserved_physically(&self, target: &Path, contains: bool) -> bool {
        self.reserved.iter().any(|r| {
            let location = r.location(&self.root_lexical, &self.root_real);
            target.starts_with(&location.real) || (contains && location.real.starts_with(target))
        })
    }

    /// The physical check, on the handle the operation then uses: where the kernel
    /// says this open directory (or file) is, plus `name` inside it, must be inside
    /// the root and outside every reserved directory (or, with `contains`, must not
    /// hold one either); then, if given, `guard` must accept it (see [`Self::ask`]).
    /// Returns the handle's real path.
    ///
    /// Why `/proc/self/fd/N` rather than comparing `(dev, ino)`: it also works on a
    /// file handle (no parent fd to walk up from), and it works when the reserved
    /// directory does not exist yet (there is no inode to compare, but its future
    /// real path is known), at the cost of one `readlinkat`. Symlinks cannot fool
    /// it: the kernel reports the directory the handle actually refers to, so a link
    /// swapped in after the open changes nothing. If /proc is unavailable every
    /// operation fails rather than run unchecked.
    fn confine(
        &self,
        op: &'static str,
        path: &WsPath,
        handle: BorrowedFd<'_>,
        name: Option<&str>,
        contains: bool,
        guard: Option<Guard<'_>>,
    ) -> Result<PathBuf, FsError> {
        let real = real_path(handle).map_err(|e| FsError::Io {
            op,
            path: path.clone(),
            source: io::Error::new(
                e.kind(),
                format!("cannot confirm where the opened file is through /proc/self/fd: {e}"),
            ),
        })?;
        if !real.starts_with(&self.root_real) {
            return Err(FsError::Escapes { op, path: path.clone() });
        }
        let target = match name {
            Some(name) => Cow::Owned(real.join(name)),
            None => Cow::Borrowed(real.as_path()),
        };
        if self.reserved_physically(&target, contains) {
            return Err(FsError::Reserved { op, path: path.clone() });
        }
        if let Some(guard) = guard {
            self.ask(op, path, handle, &real, name, guard)?;
        }
        Ok(real)
    }

    /// Asks `guard` about `handle` (whose real path, already confined to the root, is
    /// `real`), or about `name` inside it, as a workspace path. The answer is about
    /// what the handle is, not what a path string names now, so it holds for the
    /// effect the caller then performs through the same handle.
    fn ask(
        &self,
        op: &'static str,
        path: &WsPath,
        handle: BorrowedFd<'_>,
        real: &Path,
        name: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), FsError> {
        let at = self.physical(op, path, handle, real, name)?;
        consult(op, path, &at, guard)
    }

    /// `handle` (or `name` inside it) as a workspace path, from its real path `real`.
    fn physical(
        &self,
        op: &'static str,
        path: &WsPath,
        handle: BorrowedFd<'_>,
        real: &Path,
        name: Option<&str>,
    ) -> Result<WsPath, FsError> {
        let refused = |reason: &'static str| FsError::Refused { op, path: path.clone(), reason };
        let rel = real.strip_prefix(&self.root_real).map_err(|_| FsError::Escapes { op, path: path.clone() })?;
        let text = rel.to_str().ok_or_else(|| refused(UNNAMEABLE))?;
        // An unlinked file's /proc path ends in " (deleted)"; taken as a name, it
        // could dodge a rule on the real one (`deny fs.read:secrets/*.key`).
        if text.ends_with(DELETED) && !self.still_named(handle, rel) {
            return Err(FsError::NotFound { op, path: path.clone(), missing: path.clone() });
        }
        let dir = WsPath::resolve(&WsPath::root(), text).map_err(|_| refused(UNNAMEABLE))?;
        Ok(match name {
            Some(name) => dir.child(name),
            None => dir,
        })
    }

    /// Whether `rel` (under the root, not following a final link) is the very file
    /// `handle` is open on, i.e. a name ending in " (deleted)" is its real name.
    fn still_named(&self, handle: BorrowedFd<'_>, rel: &Path) -> bool {
        let (Ok(open), Ok(named)) = (rustix::fs::fstat(handle), self.root.symlink_metadata(rel)) else {
            return false;
        };
        open.st_dev == named.dev() && open.st_ino == named.ino()
    }

    /// Whether a listing of `dir` (real path `real`) leaves out the entry `name`.
    fn hidden(&self, dir: &WsPath, real: &Path, name: &OsStr) -> bool {
        self.reserved_physically(&real.join(name), false)
            || name
                .to_str()
                .and_then(|name| dir.join(name).ok())
                .is_some_and(|entry| self.reserved_lexically(&entry, false))
    }
}

/// Asks `guard` about the physical path `at` of operation `op` on `path`.
fn consult(op: &'static str, path: &WsPath, at: &WsPath, guard: Guard<'_>) -> Result<(), FsError> {
    guard(at).map_err(|reason| FsError::Denied { op, path: path.clone(), real: at.clone(), reason })
}

/// `(parent, last segment)`, or `None` for the root.
fn split(path: &WsPath) -> Option<(WsPath, &str)> {
    Some((path.parent()?, path.file_name()?))
}

/// Temp file in `dir`, write, fsync, rename over `name`, fsync `dir`. The temp file
/// is removed on any error before the rename.
fn replace_atomically(dir: &Dir, name: &str, bytes: &[u8], keep: Option<Permissions>) -> io::Result<()> {
    let (temp_name, mut temp) = create_temp(dir)?;
    let staged = (|| {
        if let Some(permissions) = keep {
            temp.set_permissions(permissions)?;
        }
        temp.write_all(bytes)?;
        temp.sync_all()?;
        drop(temp);
        // rename(2) replaces the directory entry itself: a symlink there is
        // replaced, never followed.
        dir.rename(&temp_name, dir, name)
    })();
    if let Err(e) = staged {
        let _ = dir.remove_file(&temp_name);
        return Err(e);
    }
    sync_dir(dir)
}

fn create_temp(dir: &Dir) -> io::Result<(String, File)> {
    let mut options = OpenOptions::new();
    // create_new is O_CREAT|O_EXCL: never follows or reuses anything already there.
    options.write(true).create_new(true);
    for _ in 0..16 {
        let name = format!(".alos-tmp-{:016x}", rand::random::<u64>());
        match dir.open_with(&name, &options) {
            Ok(file) => return Ok((name, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not pick an unused temporary file name",
    ))
}

/// fsync a directory so a rename or a new name in it survives a crash. The handle
/// may be `O_PATH` (cap-std's `open_dir`), which cannot be fsynced, so reopen `.`.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true);
    dir.open_with(".", &options)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tempfile::TempDir;

    fn p(s: &str) -> WsPath {
        WsPath::resolve(&WsPath::root(), s).unwrap()
    }

    /// A guard that lets everything through (the provider's own confinement still holds).
    fn any(_: &WsPath) -> Result<(), String> {
        Ok(())
    }

    /// `tmp/ws` is the workspace, `tmp/ws/.alos` its (reserved) state dir, and
    /// `tmp/outside/secret.txt` must never be reachable.
    struct Fixture {
        _tmp: TempDir,
        ws: PathBuf,
        outside: PathBuf,
        state: PathBuf,
    }

    impl Fixture {
        fn new(create_state: bool) -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let ws = tmp.path().join("ws");
            let outside = tmp.path().join("outside");
            let state = ws.join(".alos");
            std::fs::create_dir(&ws).unwrap();
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("secret.txt"), "OUTSIDE").unwrap();
            if create_state {
                std::fs::create_dir(&state).unwrap();
                std::fs::write(state.join("db"), "STATE").unwrap();
            }
            Fixture { _tmp: tmp, ws, outside, state }
        }

        fn open(&self) -> Workspace {
            Workspace::open(&self.ws, std::slice::from_ref(&self.state)).unwrap()
        }

        fn link(&self, target: impl AsRef<Path>, at: &str) {
            symlink(target, self.ws.join(at)).unwrap();
        }
    }

    fn assert_escapes<T: fmt::Debug>(result: Result<T, FsError>) {
        match result {
            Err(FsError::Escapes { .. }) => {}
            other => panic!("expected Escapes, got {other:?}"),
        }
    }

    fn assert_reserved<T: fmt::Debug>(result: Result<T, FsError>) {
        match result {
            Err(FsError::Reserved { .. }) => {}
            other => panic!("expected Reserved, got {other:?}"),
        }
    }

    // ---- WsPath ----

    #[test]
    fn resolve_normalizes_lexically() {
        let root = WsPath::root();
        assert_eq!(p("."), root);
        assert_eq!(p(""), root);
        assert_eq!(p("a/./b//c/").as_str(), "a/b/c");
        assert_eq!(p("a/../b").as_str(), "b");
        assert_eq!(p("a\\b").as_str(), "a\\b");
        assert_eq!(p("a\\b").segments().count(), 1);
        let cwd = p("a/b");
        assert_eq!(WsPath::resolve(&cwd, "").unwrap(), cwd);
        assert_eq!(WsPath::resolve(&cwd, "../c").unwrap().as_str(), "a/c");
        assert_eq!(WsPath::resolve(&cwd, "../../x").unwrap().as_str(), "x");
    }

    #[test]
    fn resolve_rejects_climbing_above_root() {
        for input in ["../x", "a/../../x", "..", "./.."] {
            assert!(
                matches!(WsPath::resolve(&WsPath::root(), input), Err(PathError::AboveRoot { .. })),
                "{input}"
            );
        }
        let err = WsPath::resolve(&p("a"), "../../x").unwrap_err();
        assert!(err.to_string().contains("\"../../x\""), "{err}");
        assert!(err.to_string().contains("climbs above the workspace root"), "{err}");
    }

    #[test]
    fn resolve_rejects_absolute_paths() {
        let err = WsPath::resolve(&p("a"), "/etc/passwd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "paths are relative to the workspace; got absolute path \"/etc/passwd\""
        );
        assert!(matches!(
            WsPath::resolve(&WsPath::root(), "/proc/self/root/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
    }

    #[test]
    fn resolve_rejects_nul_bytes() {
        assert!(matches!(WsPath::resolve(&WsPath::root(), "a\0b"), Err(PathError::Nul(_))));
    }

    #[test]
    fn resolve_limits_lengths() {
        let segment = "s".repeat(MAX_SEGMENT_BYTES);
        assert!(WsPath::resolve(&WsPath::root(), &segment).is_ok());
        let long_segment = "s".repeat(MAX_SEGMENT_BYTES + 1);
        let err = WsPath::resolve(&WsPath::root(), &long_segment).unwrap_err();
        assert!(matches!(err, PathError::SegmentTooLong { len: 256, .. }), "{err}");

        // Each input fits, the joined result does not.
        let half = [segment.as_str(); 9].join("/");
        let cwd = p(&half);
        assert!(matches!(WsPath::resolve(&cwd, &half), Err(PathError::TooLong { .. })));

        // An over-long input is refused even if it would normalize to something short.
        let dots = "./".repeat(3000);
        let err = WsPath::resolve(&WsPath::root(), &dots).unwrap_err();
        assert!(matches!(err, PathError::TooLong { len: 6000, .. }));
        assert!(err.to_string().len() < 200, "message echoes a preview, not the input");
    }

    #[test]
    fn accessors() {
        let path = p("a/b/c.txt");
        assert_eq!(path.parent(), Some(p("a/b")));
        assert_eq!(p("a").parent(), Some(WsPath::root()));
        assert_eq!(WsPath::root().parent(), None);
        assert_eq!(path.file_name(), Some("c.txt"));
        assert_eq!(p("top").file_name(), Some("top"));
        assert_eq!(WsPath::root().file_name(), None);
        assert_eq!(p("a").join("b/../c").unwrap(), p("a/c"));
        assert!(path.starts_with(&p("a/b")));
        assert!(path.starts_with(&path));
        assert!(path.starts_with(&WsPath::root()));
        assert!(!p("ab").starts_with(&p("a")));
        assert!(!p("a").starts_with(&p("a/b")));
        assert!(WsPath::root().is_root() && !path.is_root());
        assert_eq!(WsPath::root().to_string(), ".");
        assert_eq!(path.to_string(), "a/b/c.txt");
        assert_eq!(p("bad\u{1b}[2J").to_string(), "bad\\u{1b}[2J");
    }

    #[test]
    fn serializes_as_string_and_revalidates() {
        assert_eq!(serde_json::to_string(&p("a/b")).unwrap(), "\"a/b\"");
        assert_eq!(serde_json::to_string(&WsPath::root()).unwrap(), "\"\"");
        assert_eq!(serde_json::from_str::<WsPath>("\"a/./b\"").unwrap(), p("a/b"));
        assert!(serde_json::from_str::<WsPath>("\"../x\"").is_err());
        assert!(serde_json::from_str::<WsPath>("\"/etc\"").is_err());
    }

    // ---- Workspace: escapes ----

    #[test]
    fn proc_self_root_is_not_reachable() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        assert!(matches!(
            ws.read(&p("proc/self/root/etc/passwd"), 1 << 20, &any),
            Err(FsError::NotFound { .. })
        ));
        fx.link("/proc/self/root", "proc_link");
        assert_escapes(ws.read(&p("proc_link/etc/passwd"), 1 << 20, &any));
        fx.link("/proc/self/root/etc/passwd", "passwd");
        assert_escapes(ws.read(&p("passwd"), 1 << 20, &any));
    }

    #[test]
    fn symlinks_pointing_outside_escape() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        fx.link(&fx.outside, "abs");
        fx.link("../outside", "rel");
        fx.link(fx.outside.join("secret.txt"), "absf");
        fx.link("../outside/secret.txt", "relf");
        for dir in ["abs", "rel"] {
            let inner = p(&format!("{dir}/secret.txt"));
            let new = p(&format!("{dir}/new"));
            assert_escapes(ws.read(&inner, 1 << 20, &any));
            assert_escapes(ws.write(&new, b"x", WriteMode::Replace, &any));
            assert_escapes(ws.write(&new, b"x", WriteMode::Append, &any));
            assert_escapes(ws.write(&inner, b"x", WriteMode::Replace, &any));
            assert_escapes(ws.mkdir(&p(&format!("{dir}/d")), false, &any));
            assert_escapes(ws.mkdir(&p(&format!("{dir}/d/e")), true, &any));
            assert_escapes(ws.list(&p(dir), &any));
            assert_escapes(ws.stat(&inner, &any));
            assert_escapes(ws.remove(&inner, false, &any));
            // The link itself is inside the workspace and may be described.
            assert_eq!(ws.stat(&p(dir), &any).unwrap().kind, Kind::Symlink);
        }
        for file in ["absf", "relf"] {
            assert_escapes(ws.read(&p(file), 1 << 20, &any));
            // Append never follows the link.
            assert!(matches!(
                ws.write(&p(file), b"pwned", WriteMode::Append, &any),
                Err(FsError::Refused { .. })
            ));
        }
        // Replace swaps the link for a regular file in the workspace.
        ws.write(&p("absf"), b"mine", WriteMode::Replace, &any).unwrap();
        assert_eq!(ws.stat(&p("absf"), &any).unwrap().kind, Kind::File);
        assert_eq!(ws.read(&p("absf"), 100, &any).unwrap(), b"mine");

        let outside: Vec<_> = std::fs::read_dir(&fx.outside).unwrap().collect();
        assert_eq!(outside.len(), 1, "nothing was created outside");
        assert_eq!(std::fs::read(fx.outside.join("secret.txt")).unwrap(), b"OUTSIDE");
    }

    #[test]
    fn symlink_chains() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        std::fs::write(fx.ws.join("real.txt"), "REAL").unwrap();
        fx.link("real.txt", "c");
        fx.link("c", "b");
        fx.link("b", "a");
        assert_eq!(ws.read(&p("a"), 100, &any).unwrap(), b"REAL");

        fx.link("../outside/secret.txt", "y");
        fx.link("y", "x");
        assert_escapes(ws.read(&p("x"), 100, &any));

        std::fs::create_dir(fx.ws.join("sub")).unwrap();
        fx.link("../../outside", "sub/up");
        fx.link("sub/up", "hop");
        assert_escapes(ws.read(&p("hop/secret.txt"), 100, &any));

        fx.link("loop2", "loop1");
        fx.link("loop1", "loop2");
        assert!(ws.read(&p("loop1"), 100, &any).is_err());
    }

    // ---- Workspace: reserved state directory ----

    #[test]
    fn state_dir_is_unreachable_directly_and_through_symlinks() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        std::fs::create_dir(fx.ws.join("sub")).unwrap();
        fx.link(".alos", "st");
        fx.link(".alos/db", "into");
        fx.link("../.alos", "sub/deep");
        fx.link(&fx.state, "stabs");

        assert_reserved(ws.read(&p(".alos/db"), 100, &any));
        assert_reserved(ws.list(&p(".alos"), &any));
        assert_reserved(ws.stat(&p(".alos"), &any));
        assert_reserved(ws.mkdir(&p(".alos"), true, &any));
        assert_reserved(ws.remove(&p(".alos"), true, &any));
        assert_reserved(ws.write(&p(".alos/x"), b"x", WriteMode::Replace, &any));

        for dir in ["st", "sub/deep"] {
            assert_reserved(ws.read(&p(&format!("{dir}/db")), 100, &any));
            assert_reserved(ws.write(&p(&format!("{dir}/x")), b"x", WriteMode::Replace, &any));
            assert_reserved(ws.write(&p(&format!("{dir}/x")), b"x", WriteMode::Append, &any));
            assert_reserved(ws.write(&p(&format!("{dir}/db")), b"x", WriteMode::Replace, &any));
            assert_reserved(ws.mkdir(&p(&format!("{dir}/newdir")), false, &any));
            assert_reserved(ws.mkdir(&p(&format!("{dir}/a/b")), true, &any));
            assert_reserved(ws.mkdir(&p(dir), true, &any));
            assert_reserved(ws.list(&p(dir), &any));
            assert_reserved(ws.stat(&p(&format!("{dir}/db")), &any));
            assert_reserved(ws.remove(&p(&format!("{dir}/db")), false, &any));
        }
        assert_reserved(ws.read(&p("into"), 100, &any));
        // Absolute symlinks are refused by beneath-resolution before the state check.
        assert_escapes(ws.read(&p("stabs/db"), 100, &any));

        // Writing onto a link that points into the state dir replaces the link.
        ws.write(&p("into"), b"mine", WriteMode::Replace, &any).unwrap();
        assert!(matches!(
            ws.write(&p("sub/deep"), b"x", WriteMode::Append, &any),
            Err(FsError::Refused { .. })
        ));
        // Removing a link to the state dir removes the link only.
        ws.remove(&p("st"), true, &any).unwrap();

        let mut state: Vec<_> = std::fs::read_dir(&fx.state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        state.sort();
        assert_eq!(state, vec![OsString::from("db")]);
        assert_eq!(std::fs::read(fx.state.join("db")).unwrap(), b"STATE");
    }

    #[test]
    fn state_dir_not_existing_yet() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        assert_reserved(ws.write(&p(".alos/x"), b"x", WriteMode::Replace, &any));
        assert_reserved(ws.write(&p(".alos"), b"x", WriteMode::Replace, &any));
        assert_reserved(ws.mkdir(&p(".alos"), false, &any));
        assert_reserved(ws.mkdir(&p(".alos/a/b"), true, &any));
        assert_reserved(ws.stat(&p(".alos"), &any));

        // A dangling link planted before the state dir exists.
        fx.link(".alos", "st");
        assert!(matches!(
            ws.write(&p("st/x"), b"x", WriteMode::Replace, &any),
            Err(FsError::NotFound { .. })
        ));
        assert!(ws.mkdir(&p("st/x"), true, &any).is_err());
        assert!(matches!(ws.mkdir(&p("st"), false, &any), Err(FsError::AlreadyExists { .. })));
        assert!(matches!(
            ws.write(&p("st"), b"x", WriteMode::Append, &any),
            Err(FsError::Refused { .. })
        ));
        assert!(!fx.state.exists(), "no operation created the state dir through the link");
        ws.write(&p("st"), b"x", WriteMode::Replace, &any).unwrap();
        assert!(!fx.state.exists());
        assert_eq!(ws.stat(&p("st"), &any).unwrap().kind, Kind::File);

        // Later the store creates it: the planted link now leads into it.
        ws.remove(&p("st"), false, &any).unwrap();
        fx.link(".alos", "st");
        std::fs::create_dir(&fx.state).unwrap();
        std::fs::write(fx.state.join("db"), "STATE").unwrap();
        assert_reserved(ws.read(&p("st/db"), 100, &any));
        assert_reserved(ws.write(&p("st/x"), b"x", WriteMode::Replace, &any));
        assert_reserved(ws.list(&p("st"), &any));
        assert!(!fx.state.join("x").exists());
    }

    #[test]
    fn reserved_dir_with_missing_ancestors_and_its_ancestors() {
        let fx = Fixture::new(false);
        let state = fx.ws.join("var/lib/alos");
        let ws = Workspace::open(&fx.ws, &[PathBuf::from("var/lib/alos")]).unwrap();
        assert_reserved(ws.mkdir(&p("var/lib/alos"), true, &any));
        ws.mkdir(&p("var/lib"), true, &any).unwrap();
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("db"), "STATE").unwrap();
        fx.link("var", "v");
        assert_reserved(ws.read(&p("v/lib/alos/db"), 100, &any));
        // Deleting an ancestor would delete the state dir.
        assert_reserved(ws.remove(&p("var"), true, &any));
        assert_reserved(ws.remove(&p("v/lib"), true, &any));
        assert!(matches!(ws.remove(&p("var/lib"), false, &any), Err(FsError::NotEmpty { .. })));
        assert_eq!(std::fs::read(state.join("db")).unwrap(), b"STATE");
        // Listing the parent hides it.
        assert!(ws.list(&p("var/lib"), &any).unwrap().is_empty());
        assert!(ws.list(&p("v/lib"), &any).unwrap().is_empty());
    }

    #[test]
    fn open_rejects_reserved_root() {
        let fx = Fixture::new(false);
        assert!(Workspace::open(&fx.ws, std::slice::from_ref(&fx.ws)).is_err());
        assert!(Workspace::open(&fx.ws, &[PathBuf::from(".")]).is_err());
        assert!(Workspace::open(&fx.ws, &[fx.ws.parent().unwrap().to_path_buf()]).is_err());
    }

    #[test]
    fn listing_hides_the_state_dir() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        std::fs::write(fx.ws.join("b.txt"), "bb").unwrap();
        std::fs::create_dir(fx.ws.join("a")).unwrap();
        fx.link("b.txt", "c");
        let listing = ws.list(&WsPath::root(), &any).unwrap();
        assert_eq!(
            listing,
            vec![
                Entry { name: "a".into(), kind: Kind::Dir, size: listing[0].size },
                Entry { name: "b.txt".into(), kind: Kind::File, size: 2 },
                Entry { name: "c".into(), kind: Kind::Symlink, size: 5 },
            ]
        );
        // A link to the root lists the root, still without the state dir.
        fx.link(".", "self");
        let names: Vec<_> = ws.list(&p("self"), &any).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b.txt", "c", "self"]);
    }

    // ---- races ----

    /// Swaps `ws/d` between symlinks to `targets` until told to stop.
    fn swapper(ws: PathBuf, targets: Vec<PathBuf>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let staging = ws.join("d.next");
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&staging);
                symlink(&targets[i % targets.len()], &staging).unwrap();
                std::fs::rename(&staging, ws.join("d")).unwrap();
                i += 1;
            }
        })
    }

    /// Runs `attempt` until each of `wanted` outcomes was seen (and at least 2000
    /// times), or 10 seconds pass.
    fn race(mut attempt: impl FnMut() -> &'static str, wanted: &[&str]) {
        let start = Instant::now();
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        let mut rounds = 0;
        while rounds < 2000 || (!wanted.iter().all(|w| seen.contains_key(w)) && start.elapsed() < Duration::from_secs(10)) {
            *seen.entry(attempt()).or_default() += 1;
            rounds += 1;
        }
        for w in wanted {
            assert!(seen.contains_key(w), "outcome {w} never seen: {seen:?}");
        }
    }

    #[test]
    fn swapped_directory_symlink_never_reads_outside() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        std::fs::create_dir(fx.ws.join("inside")).unwrap();
        std::fs::write(fx.ws.join("inside/secret.txt"), "INSIDE").unwrap();
        fx.link("inside", "d");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = swapper(
            fx.ws.clone(),
            vec!["inside".into(), fx.outside.clone(), "../outside".into()],
            stop.clone(),
        );
        race(
            || match ws.read(&p("d/secret.txt"), 100, &any) {
                Ok(bytes) => {
                    assert_eq!(bytes, b"INSIDE", "read outside content");
                    "inside"
                }
                Err(FsError::Escapes { .. }) => "escapes",
                Err(FsError::NotFound { .. }) => "transient",
                Err(e) => panic!("unexpected {e}"),
            },
            &["inside", "escapes"],
        );
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        assert_eq!(std::fs::read(fx.outside.join("secret.txt")).unwrap(), b"OUTSIDE");
    }

    #[test]
    fn swapped_directory_symlink_never_reaches_state_dir() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        std::fs::create_dir(fx.ws.join("inside")).unwrap();
        std::fs::write(fx.ws.join("inside/db"), "INSIDE").unwrap();
        fx.link("inside", "d");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = swapper(fx.ws.clone(), vec!["inside".into(), ".alos".into()], stop.clone());
        race(
            || match ws.read(&p("d/db"), 100, &any) {
                Ok(bytes) => {
                    assert_eq!(bytes, b"INSIDE", "read the state dir");
                    "inside"
                }
                Err(FsError::Reserved { .. }) => "reserved",
                Err(FsError::NotFound { .. }) => "transient",
                Err(e) => panic!("unexpected {e}"),
            },
            &["inside", "reserved"],
        );
        race(
            || match ws.write(&p("d/w"), b"w", WriteMode::Replace, &any) {
                Ok(_) => "written",
                Err(FsError::Reserved { .. }) => "reserved",
                Err(FsError::NotFound { .. }) => "transient",
                Err(e) => panic!("unexpected {e}"),
            },
            &["written", "reserved"],
        );
        race(
            || match ws.mkdir(&p("d/m"), true, &any) {
                Ok(_) => "made",
                Err(FsError::Reserved { .. }) => "reserved",
                Err(FsError::NotFound { .. }) => "transient",
                Err(e) => panic!("unexpected {e}"),
            },
            &["made", "reserved"],
        );
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        let mut state: Vec<_> = std::fs::read_dir(&fx.state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        state.sort();
        assert_eq!(state, vec![OsString::from("db")], "nothing was created in the state dir");
        assert_eq!(std::fs::read(fx.state.join("db")).unwrap(), b"STATE");
    }

    // ---- guard: the caller's check on the physical path ----

    /// Runs `op` with a guard that records what it is asked and refuses what `refuse`
    /// says; returns the result and the recorded paths.
    fn asked<T>(
        refuse: impl Fn(&WsPath) -> bool,
        op: impl FnOnce(Guard<'_>) -> Result<T, FsError>,
    ) -> (Result<T, FsError>, Vec<String>) {
        let seen = std::cell::RefCell::new(Vec::new());
        let result = op(&|real: &WsPath| {
            seen.borrow_mut().push(real.as_str().to_string());
            if refuse(real) {
                Err("refused by the test".to_string())
            } else {
                Ok(())
            }
        });
        (result, seen.into_inner())
    }

    fn allow_all(_: &WsPath) -> bool {
        false
    }

    fn refuse_all(_: &WsPath) -> bool {
        true
    }

    /// `docs/plain.txt`, `secrets/key` ("KEY"), and relative in-workspace links into
    /// `secrets`: file, directory, chains of both, and one that climbs from a subdir.
    fn linked_fixture() -> Fixture {
        let fx = Fixture::new(true);
        for dir in ["docs", "docs/sub", "secrets"] {
            std::fs::create_dir(fx.ws.join(dir)).unwrap();
        }
        std::fs::write(fx.ws.join("docs/plain.txt"), "PLAIN").unwrap();
        std::fs::write(fx.ws.join("secrets/key"), "KEY").unwrap();
        fx.link("../secrets/key", "docs/x");
        fx.link("c2", "docs/c1");
        fx.link("x", "docs/c2");
        fx.link("../secrets", "docs/d");
        fx.link("dl2", "docs/dl1");
        fx.link("d", "docs/dl2");
        fx.link("../../secrets", "docs/sub/up");
        fx
    }

    #[test]
    fn guard_is_asked_about_the_real_path() {
        let fx = linked_fixture();
        let ws = fx.open();
        let read = |path: &str| asked(allow_all, |g| ws.read(&p(path), 100, g));
        for path in ["docs/x", "docs/c1", "docs/d/key", "docs/dl1/key", "docs/sub/up/key"] {
            let (result, seen) = read(path);
            assert_eq!(result.unwrap(), b"KEY", "{path}");
            assert_eq!(seen, ["secrets/key"], "{path}");
        }
        // No symlink: the real path is the lexical one, and the guard is still asked.
        let (result, seen) = read("docs/plain.txt");
        assert_eq!(result.unwrap(), b"PLAIN");
        assert_eq!(seen, ["docs/plain.txt"]);

        let (result, seen) = asked(allow_all, |g| ws.write(&p("docs/d/new"), b"N", WriteMode::Replace, g));
        assert_eq!((result.unwrap(), seen), (1, vec!["secrets/new".to_string()]));
        let (result, seen) = asked(allow_all, |g| ws.write(&p("docs/dl1/log"), b"L", WriteMode::Append, g));
        assert_eq!((result.unwrap(), seen), (1, vec!["secrets/log".to_string()]));
        let (result, seen) = asked(allow_all, |g| ws.list(&p("docs/dl1"), g));
        assert_eq!(result.unwrap().len(), 3);
        assert_eq!(seen, ["secrets"]);
        let (result, seen) = asked(allow_all, |g| ws.stat(&p("docs/d/key"), g));
        assert_eq!((result.unwrap().kind, seen), (Kind::File, vec!["secrets/key".to_string()]));
        // stat does not follow a final link: it is about the link itself.
        let (result, seen) = asked(allow_all, |g| ws.stat(&p("docs/x"), g));
        assert_eq!((result.unwrap().kind, seen), (Kind::Symlink, vec!["docs/x".to_string()]));
        let (result, seen) = asked(allow_all, |g| ws.stat(&WsPath::root(), g));
        assert_eq!((result.unwrap().kind, seen), (Kind::Dir, vec![String::new()]));

        let (result, seen) = asked(allow_all, |g| ws.mkdir(&p("docs/d/m"), false, g));
        result.unwrap();
        assert_eq!(seen, ["secrets/m"]);
        // Recursive: each level it creates, once, but not the existing ancestors.
        let (result, seen) = asked(allow_all, |g| ws.mkdir(&p("docs/sub/up/a/b"), true, g));
        result.unwrap();
        assert_eq!(seen, ["secrets/a", "secrets/a/b"]);
        assert!(fx.ws.join("secrets/a/b").is_dir());
        let (result, seen) = asked(allow_all, |g| ws.mkdir(&p("docs/d/a/b"), true, g));
        result.unwrap();
        assert_eq!(seen, ["secrets/a/b"], "an existing path is still asked about");
        let (result, seen) = asked(allow_all, |g| ws.mkdir(&p("docs/new/deeper"), true, g));
        result.unwrap();
        assert_eq!(seen, ["docs/new", "docs/new/deeper"]);

        let (result, seen) = asked(allow_all, |g| ws.remove(&p("docs/dl1/a"), true, g));
        result.unwrap();
        assert_eq!(seen, ["secrets/a"]);
        assert!(!fx.ws.join("secrets/a").exists());
        let (result, seen) = asked(allow_all, |g| ws.remove(&p("docs/d/log"), false, g));
        result.unwrap();
        assert_eq!(seen, ["secrets/log"]);
        // Replacing a final link replaces the link: that is what the guard is asked about.
        let (result, seen) = asked(allow_all, |g| ws.write(&p("docs/c1"), b"C", WriteMode::Replace, g));
        result.unwrap();
        assert_eq!(seen, ["docs/c1"]);
        assert_eq!(std::fs::read(fx.ws.join("secrets/key")).unwrap(), b"KEY");
    }

    #[test]
    fn a_refusing_guard_means_no_effect() {
        let fx = linked_fixture();
        let ws = fx.open();
        std::fs::create_dir(fx.ws.join("secrets/inner")).unwrap();
        std::fs::write(fx.ws.join("secrets/inner/f"), "F").unwrap();
        let snapshot = |dir: &str| {
            let mut all: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
            let mut stack = vec![fx.ws.join(dir)];
            while let Some(at) = stack.pop() {
                for entry in std::fs::read_dir(&at).unwrap() {
                    let entry = entry.unwrap();
                    let kind = entry.file_type().unwrap();
                    if kind.is_dir() {
                        stack.push(entry.path());
                    }
                    all.push((entry.path(), kind.is_file().then(|| std::fs::read(entry.path()).unwrap())));
                }
            }
            all.sort();
            all
        };
        let before = (snapshot("secrets"), snapshot("docs"));

        let denied = |result: Result<(), FsError>, path: &str, real: &str| match result {
            Err(FsError::Denied { path: p, real: r, reason, .. }) => {
                assert_eq!((p.as_str(), r.as_str(), reason.as_str()), (path, real, "refused by the test"));
            }
            other => panic!("{path}: expected Denied, got {other:?}"),
        };
        let (result, _) = asked(refuse_all, |g| ws.read(&p("docs/x"), 100, g).map(drop));
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read docs/x: it touches secrets/key (symlinks resolved): refused by the test"
        );
        denied(Err(err), "docs/x", "secrets/key");
        let (result, _) = asked(refuse_all, |g| ws.read(&p("docs/plain.txt"), 100, g).map(drop));
        let err = result.unwrap_err();
        assert_eq!(err.to_string(), "cannot read docs/plain.txt: refused by the test");
        // Refused before anything about the target shows: not its size, not its kind.
        let (result, _) = asked(refuse_all, |g| ws.read(&p("docs/x"), 1, g).map(drop));
        denied(result, "docs/x", "secrets/key");
        let (result, _) = asked(refuse_all, |g| ws.read(&p("docs/d"), 1, g).map(drop));
        denied(result, "docs/d", "secrets");
        let (result, _) = asked(refuse_all, |g| ws.list(&p("docs/d"), g).map(drop));
        denied(result, "docs/d", "secrets");
        let (result, _) = asked(refuse_all, |g| ws.stat(&p("docs/d/key"), g).map(drop));
        denied(result, "docs/d/key", "secrets/key");

        for mode in [WriteMode::Replace, WriteMode::Append] {
            for (path, real) in [("docs/d/key", "secrets/key"), ("docs/d/new", "secrets/new"), ("docs/plain.txt", "docs/plain.txt")] {
                let (result, _) = asked(refuse_all, |g| ws.write(&p(path), b"X", mode, g).map(drop));
                denied(result, path, real);
            }
        }
        let (result, _) = asked(refuse_all, |g| ws.mkdir(&p("docs/d/m"), false, g));
        denied(result, "docs/d/m", "secrets/m");
        let (result, _) = asked(refuse_all, |g| ws.mkdir(&p("docs/d/m/n"), true, g));
        denied(result, "docs/d/m/n", "secrets/m");
        // Only a deep level refused: no level is created, not even the accepted ones.
        let deep = |real: &WsPath| real.as_str() == "docs/fresh/a/b";
        let (result, seen) = asked(deep, |g| ws.mkdir(&p("docs/fresh/a/b/c"), true, g));
        denied(result, "docs/fresh/a/b/c", "docs/fresh/a/b");
        assert_eq!(seen, ["docs/fresh", "docs/fresh/a", "docs/fresh/a/b"]);
        for (path, real, recursive) in [
            ("docs/d/key", "secrets/key", false),
            ("docs/d/inner", "secrets/inner", true),
            ("docs/sub/up", "docs/sub/up", true),
            ("docs/plain.txt", "docs/plain.txt", false),
        ] {
            let (result, _) = asked(refuse_all, |g| ws.remove(&p(path), recursive, g));
            denied(result, path, real);
        }
        assert_eq!((snapshot("secrets"), snapshot("docs")), before, "nothing was written, created or removed");
    }

    #[test]
    fn a_missing_target_does_not_reveal_a_refused_place() {
        let fx = linked_fixture();
        let ws = fx.open();
        fx.link(".alos", "st");
        let refuse_secrets = |real: &WsPath| real.starts_with(&p("secrets"));
        // Where it would be is refused: that is the answer, not whether it exists.
        let (result, seen) = asked(refuse_secrets, |g| ws.read(&p("docs/d/missing"), 100, g));
        assert!(matches!(&result, Err(FsError::Denied { real, .. }) if real == &p("secrets/missing")), "{result:?}");
        assert_eq!(seen, ["secrets/missing"]);
        let (result, _) = asked(refuse_secrets, |g| ws.write(&p("docs/d/no/f"), b"x", WriteMode::Replace, g));
        assert!(matches!(&result, Err(FsError::Denied { real, .. }) if real == &p("secrets/no/f")), "{result:?}");
        let (result, _) = asked(refuse_secrets, |g| ws.list(&p("docs/dl1/no"), g));
        assert!(matches!(result, Err(FsError::Denied { .. })), "{result:?}");
        let (result, _) = asked(refuse_secrets, |g| ws.mkdir(&p("docs/d/no/m"), false, g));
        assert!(matches!(result, Err(FsError::Denied { .. })), "{result:?}");
        // Where it is allowed, a missing file is just missing.
        let (result, _) = asked(allow_all, |g| ws.read(&p("docs/d/missing"), 100, g));
        assert!(matches!(result, Err(FsError::NotFound { .. })), "{result:?}");
        let (result, _) = asked(refuse_secrets, |g| ws.read(&p("docs/missing"), 100, g));
        assert!(matches!(result, Err(FsError::NotFound { .. })), "{result:?}");
        // Nothing in the state dir can be probed through a link either.
        assert_reserved(ws.read(&p("st/nothing"), 100, &any));
        assert_reserved(ws.list(&p("st/nodir"), &any));
        assert_reserved(ws.stat(&p("st/nodir/f"), &any));
        assert_reserved(ws.write(&p("st/nodir/f"), b"x", WriteMode::Append, &any));
        assert_reserved(ws.remove(&p("st/nodir/f"), true, &any));
    }

    #[test]
    fn swapped_directory_symlink_never_gets_past_the_guard() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        for (dir, content) in [("allowed", "ALLOWED"), ("denied", "DENIED")] {
            std::fs::create_dir(fx.ws.join(dir)).unwrap();
            std::fs::write(fx.ws.join(dir).join("f"), content).unwrap();
            std::fs::write(fx.ws.join(dir).join("r"), content).unwrap();
        }
        fx.link("allowed", "d");
        let only_allowed = |real: &WsPath| {
            if real.starts_with(&p("allowed")) {
                Ok(())
            } else {
                Err(format!("{real} is not under allowed/"))
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = swapper(fx.ws.clone(), vec!["allowed".into(), "denied".into()], stop.clone());
        race(
            || match ws.read(&p("d/f"), 100, &only_allowed) {
                Ok(bytes) => {
                    assert_eq!(bytes, b"ALLOWED", "read the denied dir");
                    "allowed"
                }
                Err(FsError::Denied { real, .. }) => {
                    assert_eq!(real, p("denied/f"));
                    "denied"
                }
                Err(FsError::NotFound { .. }) => "transient",
                Err(e) => panic!("unexpected {e}"),
            },
            &["allowed", "denied"],
        );
        for mode in [WriteMode::Replace, WriteMode::Append] {
            race(
                || match ws.write(&p("d/w"), b"w", mode, &only_allowed) {
                    Ok(_) => "written",
                    Err(FsError::Denied { .. }) => "denied",
                    Err(FsError::NotFound { .. }) => "transient",
                    Err(e) => panic!("unexpected {e}"),
                },
                &["written", "denied"],
            );
        }
        race(
            || match ws.mkdir(&p("d/m/n"), true, &only_allowed) {
                Ok(_) => "made",
                Err(FsError::Denied { .. }) => "denied",
                Err(FsError::NotFound { .. }) => "transient",
                Err(e) => panic!("unexpected {e}"),
            },
            &["made", "denied"],
        );
        race(
            || {
                std::fs::write(fx.ws.join("allowed/r"), "ALLOWED").unwrap();
                match ws.remove(&p("d/r"), false, &only_allowed) {
                    Ok(_) => "removed",
                    Err(FsError::Denied { .. }) => "denied",
                    Err(FsError::NotFound { .. }) => "transient",
                    Err(e) => panic!("unexpected {e}"),
                }
            },
            &["removed", "denied"],
        );
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(fx.ws.join("denied"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["f", "r"], "nothing was created in the denied dir");
        assert_eq!(std::fs::read(fx.ws.join("denied/f")).unwrap(), b"DENIED");
        assert_eq!(std::fs::read(fx.ws.join("denied/r")).unwrap(), b"DENIED");
        assert_eq!(std::fs::read(fx.ws.join("allowed/w")).unwrap().first(), Some(&b'w'));
    }

    #[test]
    fn an_unlinked_file_is_not_named_by_its_deleted_path() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        std::fs::write(fx.ws.join("k"), "K").unwrap();
        let file = ws.root.open("k").unwrap();
        std::fs::remove_file(fx.ws.join("k")).unwrap();
        let real = real_path(file.as_fd()).unwrap();
        assert_eq!(real, ws.root_real.join("k (deleted)"));
        let refuse = |_: &WsPath| -> Result<(), String> { panic!("the guard must not be asked") };
        assert!(matches!(
            ws.ask("read", &p("k"), file.as_fd(), &real, None, &refuse),
            Err(FsError::NotFound { .. })
        ));
        // A file really named like that is its own name.
        std::fs::write(fx.ws.join("k (deleted)"), "K").unwrap();
        let file = ws.root.open("k (deleted)").unwrap();
        let real = real_path(file.as_fd()).unwrap();
        let (result, seen) = asked(allow_all, |g| ws.ask("read", &p("k (deleted)"), file.as_fd(), &real, None, g));
        result.unwrap();
        assert_eq!(seen, ["k (deleted)"]);
    }

    // ---- data safety ----

    fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".alos-tmp-"))
            .collect()
    }

    #[test]
    fn atomic_replace_leaves_no_temp_files_and_keeps_old_content() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        assert_eq!(ws.write(&p("f"), b"one", WriteMode::Replace, &any).unwrap(), 3);
        assert_eq!(ws.write(&p("f"), b"second", WriteMode::Replace, &any).unwrap(), 6);
        assert_eq!(ws.read(&p("f"), 100, &any).unwrap(), b"second");
        assert!(temp_files(&fx.ws).is_empty());

        let err = ws.write(&p("nope/f"), b"x", WriteMode::Replace, &any).unwrap_err();
        match &err {
            FsError::NotFound { missing, .. } => assert_eq!(missing, &p("nope")),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(err.to_string(), "cannot write nope/f: directory nope does not exist");

        // A target that is a directory: refused, nothing left behind.
        std::fs::create_dir(fx.ws.join("dir")).unwrap();
        assert!(matches!(
            ws.write(&p("dir"), b"x", WriteMode::Replace, &any),
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(ws.write(&WsPath::root(), b"x", WriteMode::Replace, &any), Err(FsError::IsADirectory { .. })));

        // A read-only target keeps its content.
        std::fs::set_permissions(fx.ws.join("f"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(
            ws.write(&p("f"), b"third", WriteMode::Replace, &any),
            Err(FsError::Refused { .. })
        ));
        // Non-root: the kernel's EACCES comes first; root: our read-only check.
        match ws.write(&p("f"), b"third", WriteMode::Append, &any) {
            Err(FsError::Refused { .. }) => {}
            Err(FsError::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(std::fs::read(fx.ws.join("f")).unwrap(), b"second");
        assert!(temp_files(&fx.ws).is_empty());
    }

    #[test]
    fn failed_rename_removes_the_temp_file() {
        let fx = Fixture::new(false);
        std::fs::create_dir(fx.ws.join("full")).unwrap();
        std::fs::write(fx.ws.join("full/keep"), "KEEP").unwrap();
        let dir = Dir::open_ambient_dir(&fx.ws, cap_std::ambient_authority()).unwrap();
        // Renaming a file over a non-empty directory fails after the temp is written.
        assert!(replace_atomically(&dir, "full", b"new", None).is_err());
        assert!(temp_files(&fx.ws).is_empty());
        assert_eq!(std::fs::read(fx.ws.join("full/keep")).unwrap(), b"KEEP");
    }

    #[test]
    fn replace_keeps_the_file_mode() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        ws.write(&p("run.sh"), b"#!/bin/sh\n", WriteMode::Replace, &any).unwrap();
        std::fs::set_permissions(fx.ws.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        ws.write(&p("run.sh"), b"#!/bin/sh\necho\n", WriteMode::Replace, &any).unwrap();
        let mode = std::fs::metadata(fx.ws.join("run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
    }

    #[test]
    fn non_utf8_bytes_round_trip() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        let bytes: Vec<u8> = (0..=255u8).rev().collect();
        assert_eq!(ws.write(&p("bin"), &bytes, WriteMode::Replace, &any).unwrap(), 256);
        assert_eq!(ws.read(&p("bin"), 256, &any).unwrap(), bytes);
        assert_eq!(ws.write(&p("bin"), &[0xff, 0x00, 0xc3], WriteMode::Append, &any).unwrap(), 259);
        let mut expected = bytes.clone();
        expected.extend_from_slice(&[0xff, 0x00, 0xc3]);
        assert_eq!(ws.read(&p("bin"), 1000, &any).unwrap(), expected);
    }

    #[test]
    fn append_creates_and_extends() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        assert_eq!(ws.write(&p("log"), b"a\n", WriteMode::Append, &any).unwrap(), 2);
        assert_eq!(ws.write(&p("log"), b"bc\n", WriteMode::Append, &any).unwrap(), 5);
        assert_eq!(ws.read(&p("log"), 100, &any).unwrap(), b"a\nbc\n");
        std::fs::create_dir(fx.ws.join("dir")).unwrap();
        assert!(matches!(
            ws.write(&p("dir"), b"x", WriteMode::Append, &any),
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(
            ws.write(&p("missing/log"), b"x", WriteMode::Append, &any),
            Err(FsError::NotFound { .. })
        ));
    }

    #[test]
    fn remove_of_a_symlink_removes_the_link_not_the_target() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        std::fs::write(fx.ws.join("target.txt"), "T").unwrap();
        std::fs::create_dir(fx.ws.join("tdir")).unwrap();
        std::fs::write(fx.ws.join("tdir/inner"), "I").unwrap();
        fx.link("target.txt", "flink");
        fx.link("tdir", "dlink");
        fx.link(&fx.outside, "olink");
        ws.remove(&p("flink"), false, &any).unwrap();
        ws.remove(&p("dlink"), true, &any).unwrap();
        ws.remove(&p("olink"), true, &any).unwrap();
        assert!(std::fs::symlink_metadata(fx.ws.join("flink")).is_err());
        assert!(std::fs::symlink_metadata(fx.ws.join("dlink")).is_err());
        assert_eq!(std::fs::read(fx.ws.join("target.txt")).unwrap(), b"T");
        assert_eq!(std::fs::read(fx.ws.join("tdir/inner")).unwrap(), b"I");
        assert_eq!(std::fs::read(fx.outside.join("secret.txt")).unwrap(), b"OUTSIDE");
    }

    #[test]
    fn remove_directories() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        ws.mkdir(&p("a/b/c"), true, &any).unwrap();
        ws.write(&p("a/b/c/f"), b"x", WriteMode::Replace, &any).unwrap();
        // A link inside the tree being removed is removed, not followed.
        fx.link("../../outside", "a/out");
        let err = ws.remove(&p("a"), false, &any).unwrap_err();
        assert!(matches!(err, FsError::NotEmpty { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot remove a: the directory is not empty"));
        ws.remove(&p("a"), true, &any).unwrap();
        assert!(!fx.ws.join("a").exists());
        assert_eq!(std::fs::read(fx.outside.join("secret.txt")).unwrap(), b"OUTSIDE");

        let err = ws.remove(&WsPath::root(), true, &any).unwrap_err();
        assert!(matches!(err, FsError::Refused { .. }));
        assert_eq!(err.to_string(), "cannot remove .: the workspace root cannot be removed");
        assert!(matches!(ws.remove(&p("gone"), false, &any), Err(FsError::NotFound { .. })));
    }

    #[test]
    fn mkdir_cases() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        let err = ws.mkdir(&p("x/y"), false, &any).unwrap_err();
        assert_eq!(err.to_string(), "cannot create directory x/y: directory x does not exist");
        ws.mkdir(&p("x/y/z"), true, &any).unwrap();
        ws.mkdir(&p("x/y/z"), true, &any).unwrap();
        assert!(matches!(ws.mkdir(&p("x/y"), false, &any), Err(FsError::AlreadyExists { .. })));
        ws.write(&p("x/file"), b"", WriteMode::Replace, &any).unwrap();
        match ws.mkdir(&p("x/file/sub"), true, &any) {
            Err(FsError::NotADirectory { at, .. }) => assert_eq!(at, p("x/file")),
            other => panic!("expected NotADirectory, got {other:?}"),
        }
        // Following an in-workspace link is fine, including one that climbs.
        fx.link("x", "xl");
        ws.mkdir(&p("xl/via"), true, &any).unwrap();
        assert!(fx.ws.join("x/via").is_dir());
        fx.link("../../x", "x/y/up");
        ws.mkdir(&p("x/y/up/climbed/deeper"), true, &any).unwrap();
        assert!(fx.ws.join("x/climbed/deeper").is_dir());
    }

    // ---- reads and stat ----

    #[test]
    fn read_enforces_the_size_limit() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        ws.write(&p("big"), &[7u8; 100], WriteMode::Replace, &any).unwrap();
        assert_eq!(ws.read(&p("big"), 100, &any).unwrap().len(), 100);
        let err = ws.read(&p("big"), 99, &any).unwrap_err();
        assert!(matches!(err, FsError::TooLarge { size: 100, limit: 99, .. }));
        assert_eq!(err.to_string(), "cannot read big: it is 100 bytes, over the limit of 99 bytes");
        assert!(matches!(ws.read(&WsPath::root(), 10, &any), Err(FsError::IsADirectory { .. })));
        std::fs::create_dir(fx.ws.join("d")).unwrap();
        assert!(matches!(ws.read(&p("d"), 10, &any), Err(FsError::IsADirectory { .. })));
        assert!(matches!(ws.read(&p("none"), 10, &any), Err(FsError::NotFound { .. })));
    }

    #[test]
    fn read_of_a_fifo_is_refused_without_blocking() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fx.ws.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(ws.read(&p("fifo"), 10, &any), Err(FsError::Refused { .. })));
        assert!(matches!(
            ws.write(&p("fifo"), b"x", WriteMode::Append, &any),
            Err(FsError::Refused { .. })
        ));
        assert_eq!(ws.stat(&p("fifo"), &any).unwrap().kind, Kind::Other);
    }

    #[test]
    fn stat_describes_without_following() {
        let fx = Fixture::new(false);
        let ws = fx.open();
        ws.write(&p("f"), b"hello", WriteMode::Replace, &any).unwrap();
        fx.link("f", "l");
        let stat = ws.stat(&p("f"), &any).unwrap();
        assert_eq!((stat.kind, stat.size, stat.readonly), (Kind::File, 5, false));
        assert!(stat.modified_ms.unwrap() > 1_600_000_000_000);
        let link = ws.stat(&p("l"), &any).unwrap();
        assert_eq!((link.kind, link.size), (Kind::Symlink, 1));
        assert_eq!(ws.stat(&WsPath::root(), &any).unwrap().kind, Kind::Dir);
        std::fs::set_permissions(fx.ws.join("f"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(ws.stat(&p("f"), &any).unwrap().readonly);
        let err = ws.stat(&p("missing"), &any).unwrap_err();
        assert_eq!(err.to_string(), "cannot stat missing: it does not exist");
    }

    #[test]
    fn error_messages_name_operation_and_path() {
        let fx = Fixture::new(true);
        let ws = fx.open();
        fx.link("../outside", "out");
        let err = ws.read(&p("out/secret.txt"), 10, &any).unwrap_err();
        assert!(err.to_string().starts_with("cannot read out/secret.txt: it leads outside the workspace"), "{err}");
        let err = ws.write(&p(".alos/x"), b"", WriteMode::Append, &any).unwrap_err();
        assert!(err.to_string().starts_with("cannot append to .alos/x: it touches the alos state directory"), "{err}");
        let err: FsError = WsPath::resolve(&WsPath::root(), "/etc").unwrap_err().into();
        assert!(matches!(err, FsError::Invalid(PathError::Absolute(_))));
    }
}
