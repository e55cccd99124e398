//! The shell provider: runs one program by argv — never through a shell — with a
//! scrubbed environment, a confined working directory, and bounded time and output.
//!
//! The kernel decides *whether* `shell:PROGRAM` may run; this module makes sure that
//! what runs is exactly what was decided on:
//!
//! - [`resolve_program`] takes a bare name (no `/`, no `..`, no whitespace or control
//!   characters) and looks it up in a search path the caller configures — never the
//!   agent's environment. The result, a [`Program`], holds an `O_PATH` descriptor of the
//!   file it found, its `(dev, ino)`, and the SHA-256 of its contents, computed eagerly
//!   at resolution so an approval can be bound to this exact file.
//! - [`exec`] runs the held descriptor (`fexecve`), not the path: replacing the file
//!   or re-pointing a symlink after resolution cannot change what runs. Before that it
//!   re-checks the path and the held file, and *refuses* ([`ShellError::ProgramChanged`])
//!   if the path now names a different file or the file was modified in place: the
//!   held file is still what was approved, but a swap means someone is tampering (or
//!   the package was upgraded), and the caller should resolve and ask again rather
//!   than silently run a file the path no longer names. A swap that lands after this
//!   check still cannot change what runs, since exec goes through the descriptor.
//! - The child gets exactly the environment passed in ([`ExecOptions::env`]) — nothing
//!   is added, not even `PATH`; a caller that wants the child to search its configured
//!   path passes `PATH` explicitly. Its cwd is set with `fchdir` on the caller's
//!   directory handle; no path string is re-resolved.
//! - The child leads a new process group. On timeout the whole group is killed; when the
//!   program exits, whatever it left running in its group is killed too, so background
//!   grandchildren cannot outlive the call. (A descendant that moves itself to another
//!   process group or session escapes this; containing that needs cgroups.)
//! - stdout and stderr are each kept up to [`ExecOptions::max_output_bytes`] and then
//!   drained and discarded, so a chatty child never blocks on a full pipe.
//!
//! Scripts (`#!`) run too: the interpreter receives `/dev/fd/N` naming the held file,
//! so the script that runs is the one digested. The interpreter itself is whatever the
//! script's `#!` line names (that line is covered by the digest) and is resolved by the
//! kernel at exec time. Linux only: needs `/proc` and `/dev/fd`.
//!
//! [`exec`] blocks until the child is done; call it from a blocking thread. Writing
//! stdin relies on `SIGPIPE` being ignored in this process (Rust's default for a
//! binary), so a child that closes its stdin early shows up as `EPIPE`, not a signal.

use std::ffi::{c_char, CString, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Access, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use sha2::{Digest, Sha256};

/// Longest program name accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// Largest program file that will be digested (and so run), in bytes.
pub const MAX_PROGRAM_BYTES: u64 = 1 << 30;
/// Default wall-clock limit for [`ExecOptions::new`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default per-stream output limit for [`ExecOptions::new`].
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// How long to keep reading after the program exited and its group was killed. Only a
/// descendant that left the group can still hold the pipes open by then.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Wake-up interval when the exit cannot be waited on with a pidfd, or after a kill.
const POLL_SLICE: Duration = Duration::from_millis(10);
const READ_CHUNK: usize = 64 * 1024;
/// Bounded reads/writes per wake-up, so a fast writer cannot starve the deadline check.
const IO_ROUNDS: usize = 16;

/// Why a program could not be resolved or run. Names and paths are shown with
/// control and formatting characters escaped.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("invalid program name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot look up program {name:?}: search directory {dir:?} is not an absolute path")]
    InvalidSearchPath { name: String, dir: PathBuf },
    #[error("cannot find program {name:?}: no file of that name in {}", dirs_text(.searched))]
    NotFound { name: String, searched: Vec<PathBuf> },
    #[error("cannot use {path:?} as program {name:?}: {reason}")]
    NotExecutable {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot read {path:?} to digest program {name:?}: {reason}")]
    Unreadable {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("refusing to run program {name:?} ({path:?}): {what} since it was resolved; resolve it again (and have it approved again)")]
    ProgramChanged { name: String, path: PathBuf, what: String },
    #[error("cannot run program {name:?}: {what}")]
    InvalidArgument { name: String, what: String },
    #[error("cannot start program {name:?} ({path:?}): {source}{}", spawn_hint(*.script, .source))]
    Spawn {
        name: String,
        path: PathBuf,
        script: bool,
        source: io::Error,
    },
    #[error("while running program {name:?}: cannot {op}: {source}")]
    Io {
        name: String,
        op: &'static str,
        source: io::Error,
    },
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "an empty search path".to_string();
    }
    dirs.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(", ")
}

fn spawn_hint(script: bool, source: &io::Error) -> &'static str {
    if script && source.kind() == io::ErrorKind::NotFound {
        " (it is a script: the interpreter on its #! line must exist)"
    } else {
        ""
    }
}

/// Size and change times of the resolved file; any write, truncation, chmod or link
/// change moves `ctime`, so a change in place is caught even at the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    #[allow(clippy::unnecessary_cast)] // stat field widths differ across Linux targets
    fn of(st: &Stat) -> Stamp {
        Stamp {
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }
}

#[allow(clippy::unnecessary_cast)] // stat field widths differ across Linux targets
fn dev_ino(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// A program resolved to one exact file, held open. Produced by [`resolve_program`].
pub struct Program {
    name: String,
    path: PathBuf,
    real_path: PathBuf,
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    stamp: Stamp,
    digest: [u8; 32],
    script: bool,
}

impl Program {
    /// The bare name it was resolved from (also the child's `argv[0]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The absolute path found on the search path (`dir/name`, symlinks not resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file the path led to at resolution, symlinks resolved
    /// (`/usr/bin/python3` → `/usr/bin/python3.11`); for display.
    pub fn real_path(&self) -> &Path {
        &self.real_path
    }

    /// `(st_dev, st_ino)` of the held file.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Size in bytes at resolution.
    pub fn size(&self) -> u64 {
        self.stamp.size as u64
    }

    /// SHA-256 of the file's contents at resolution.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// [`Program::digest`] as lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// Whether the file starts with `#!` (run by the interpreter it names).
    pub fn is_script(&self) -> bool {
        self.script
    }

    /// A second handle on the same resolved file.
    pub fn try_clone(&self) -> io::Result<Program> {
        Ok(Program {
            name: self.name.clone(),
            path: self.path.clone(),
            real_path: self.real_path.clone(),
            fd: self.fd.try_clone()?,
            dev: self.dev,
            ino: self.ino,
            stamp: self.stamp,
            digest: self.digest,
            script: self.script,
        })
    }

    /// Checks that the path still names the held file and that the file was not
    /// modified in place since resolution. [`exec`] calls this first.
    pub fn verify_unchanged(&self) -> Result<(), ShellError> {
        // The path first: replacing or unlinking the held file also moves its ctime
        // (link count), and "a different file" is the truer report of that.
        match rustix::fs::stat(&self.path) {
            Ok(now) if dev_ino(&now) == (self.dev, self.ino) => {}
            Ok(_) => {
                return Err(self.changed(
                    "the path now names a different file (it was replaced, or a symlink was re-pointed)".to_string(),
                ))
            }
            Err(e) => return Err(self.changed(format!("the path no longer leads to a file ({})", io::Error::from(e)))),
        }
        let held = rustix::fs::fstat(&self.fd)
            .map_err(|e| self.changed(format!("the resolved file cannot be examined ({})", io::Error::from(e))))?;
        if Stamp::of(&held) != self.stamp {
            return Err(self.changed("the file was modified in place".to_string()));
        }
        Ok(())
    }

    fn changed(&self, what: String) -> ShellError {
        ShellError::ProgramChanged {
            name: self.name.clone(),
            path: self.path.clone(),
            what,
        }
    }

    fn io_error(&self, op: &'static str, source: impl Into<io::Error>) -> ShellError {
        ShellError::Io {
            name: self.name.clone(),
            op,
            source: source.into(),
        }
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("real_path", &self.real_path)
            .field("dev_ino", &(self.dev, self.ino))
            .field("size", &self.stamp.size)
            .field("sha256", &self.digest_hex())
            .field("script", &self.script)
            .finish()
    }
}

/// Checks that `name` is a bare program name.
pub fn validate_program_name(name: &str) -> Result<(), ShellError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "it is longer than 255 bytes"
    } else if name.contains('/') {
        "it contains '/'; give a bare program name, which is looked up on the configured search path"
    } else if name == "." || name == ".." {
        "it names a directory, not a program"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else if name.chars().any(char::is_whitespace) {
        "it contains whitespace; arguments go in args, never in the program name"
    } else if name.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        "it contains a control or invisible formatting character"
    } else {
        return Ok(());
    };
    Err(ShellError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Zero-width and bidirectional-override characters: they make a name display as
/// something other than what it is.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// Resolves a bare program name against `search_path` (absolute directories, searched
/// in order; the caller's configured PATH, never the agent's environment). The first
/// executable regular file wins; symlinks are followed. A file that exists but is not
/// executable is skipped like `execvp` does, and reported if nothing else matches.
/// The file is opened, stat'ed and digested in full before this returns.
pub fn resolve_program(name: &str, search_path: &[PathBuf]) -> Result<Program, ShellError> {
    validate_program_name(name)?;
    let mut rejected: Option<(PathBuf, String)> = None;
    for dir in search_path {
        if !dir.is_absolute() {
            // A relative entry would be resolved against the host's cwd.
            return Err(ShellError::InvalidSearchPath {
                name: name.to_string(),
                dir: dir.clone(),
            });
        }
        let path = dir.join(name);
        let fd = match rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
            Err(e) => {
                rejected.get_or_insert((path, format!("it cannot be opened ({})", io::Error::from(e))));
                continue;
            }
        };
        match check_executable(&fd) {
            Ok(stat) => return finish_resolve(name, path, fd, stat),
            Err(reason) => {
                rejected.get_or_insert((path, reason));
            }
        }
    }
    Err(match rejected {
        Some((path, reason)) => ShellError::NotExecutable {
            name: name.to_string(),
            path,
            reason,
        },
        None => ShellError::NotFound {
            name: name.to_string(),
            searched: search_path.to_vec(),
        },
    })
}

/// A regular file this process may execute; `Err` says why not.
fn check_executable(fd: &OwnedFd) -> Result<Stat, String> {
    let stat = rustix::fs::fstat(fd).map_err(|e| format!("it cannot be examined ({})", io::Error::from(e)))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err("it is a directory".to_string()),
        _ => return Err("it is not a regular file".to_string()),
    }
    // faccessat through the held fd's /proc entry: the kernel's own exec permission
    // check (effective ids, supplementary groups, ACLs, noexec mounts) on this file.
    let proc_fd = proc_self_fd().map_err(|e| format!("its permissions cannot be checked ({e})"))?;
    match rustix::fs::accessat(proc_fd, fd.as_raw_fd().to_string(), Access::EXEC_OK, AtFlags::EACCESS) {
        Ok(()) => Ok(stat),
        Err(e) => Err(format!(
            "it is not executable by this process (mode {:o}: {})",
            stat.st_mode & 0o7777,
            io::Error::from(e)
        )),
    }
}

fn finish_resolve(name: &str, path: PathBuf, fd: OwnedFd, stat: Stat) -> Result<Program, ShellError> {
    let unreadable = |reason: String| ShellError::Unreadable {
        name: name.to_string(),
        path: path.clone(),
        reason,
    };
    if stat.st_size as u64 > MAX_PROGRAM_BYTES {
        return Err(unreadable(format!(
            "it is {} bytes, over the limit of {MAX_PROGRAM_BYTES} bytes",
            stat.st_size
        )));
    }
    let proc_fd = proc_self_fd().map_err(|e| unreadable(e.to_string()))?;
    let fd_name = fd.as_raw_fd().to_string();
    // Reopen the held O_PATH fd for reading via its /proc entry: the same inode,
    // whatever has happened to the path since.
    let reader = rustix::fs::openat(
        proc_fd,
        &fd_name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| unreadable(io::Error::from(e).to_string()))?;
    let reread = rustix::fs::fstat(&reader).map_err(|e| unreadable(io::Error::from(e).to_string()))?;
    if dev_ino(&reread) != dev_ino(&stat) {
        return Err(unreadable("reopening it for reading gave a different file".to_string()));
    }
    let (digest, script) = digest_file(File::from(reader)).map_err(|e| unreadable(e.to_string()))?;
    let real_path = rustix::fs::readlinkat(proc_fd, &fd_name, Vec::new())
        .map(|target| PathBuf::from(OsString::from_vec(target.into_bytes())))
        .unwrap_or_else(|_| path.clone());
    Ok(Program {
        name: name.to_string(),
        path,
        real_path,
        dev: dev_ino(&stat).0,
        ino: dev_ino(&stat).1,
        stamp: Stamp::of(&stat),
        fd,
        digest,
        script,
    })
}

fn digest_file(mut file: File) -> io::Result<([u8; 32], bool)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total: u64 = 0;
    let mut head = [0u8; 2];
    let mut head_len = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > MAX_PROGRAM_BYTES {
            // It grew while being read.
            return Err(io::Error::other(format!(
                "it is over the limit of {MAX_PROGRAM_BYTES} bytes"
            )));
        }
        while head_len < 2 && head_len < n {
            head[head_len] = buf[head_len];
            head_len += 1;
        }
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().into(), head_len == 2 && head == *b"#!"))
}

fn proc_self_fd() -> io::Result<rustix::fd::BorrowedFd<'static>> {
    rustix_linux_procfs::proc_self_fd()
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("/proc/self/fd is not usable: {e}")))
}

/// How to run a [`Program`].
pub struct ExecOptions<'a> {
    /// The working directory, as a handle the caller has already confined (e.g. a
    /// workspace directory opened beneath the root). The child `fchdir`s to it.
    pub cwd: &'a Dir,
    /// Bytes written to the child's stdin, which is then closed; `None` gives it
    /// `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// The child's entire environment, in this order. Nothing is added (not even
    /// `PATH`). Names must be non-empty without `=`; no NULs; no duplicate names.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit; on expiry the child's whole process group is killed.
    pub timeout: Duration,
    /// Bytes kept per stream (stdout and stderr each); the rest is read and dropped.
    pub max_output_bytes: usize,
}

impl<'a> ExecOptions<'a> {
    /// No stdin, empty environment, [`DEFAULT_TIMEOUT`], [`DEFAULT_MAX_OUTPUT_BYTES`].
    pub fn new(cwd: &'a Dir) -> ExecOptions<'a> {
        ExecOptions {
            cwd,
            stdin: None,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal (`SIGKILL` = 9 after a timeout).
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code, if it exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(*code),
            ExitStatus::Signaled(_) => None,
        }
    }

    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: ExitStatus,
    /// At most `max_output_bytes` bytes.
    pub stdout: Vec<u8>,
    /// The program wrote more to stdout than was kept.
    pub stdout_truncated: bool,
    pub stderr: Vec<u8>,
    pub stderr_truncated: bool,
    /// The timeout expired and the process group was killed.
    pub timed_out: bool,
    /// From spawn to reaping the child.
    pub duration: Duration,
}

/// The shell provider as the kernel uses it; [`HostShell`] runs real programs.
pub trait Shell: Send + Sync {
    /// Finds `name` on `search_path` and holds the file that would run.
    fn resolve(&self, name: &str, search_path: &[PathBuf]) -> Result<Program, ShellError>;
    /// Runs a resolved program (blocking; the kernel calls it off the isolate's thread).
    fn exec(&self, program: &Program, args: &[String], opts: ExecOptions<'_>) -> Result<ExecOutput, ShellError>;
}

/// The host's programs, run by exact file (see the module docs).
pub struct HostShell;

impl Shell for HostShell {
    fn resolve(&self, name: &str, search_path: &[PathBuf]) -> Result<Program, ShellError> {
        resolve_program(name, search_path)
    }
    fn exec(&self, program: &Program, args: &[String], opts: ExecOptions<'_>) -> Result<ExecOutput, ShellError> {
        exec(program, args, opts)
    }
}

/// Runs `program` with `args` as `argv[1..]` (`argv[0]` is the program's name), after
/// [`Program::verify_unchanged`]. Fails only if it could not be started or watched;
/// a non-zero exit, a signal or a timeout is an [`ExecOutput`].
pub fn exec(program: &Program, args: &[String], opts: ExecOptions<'_>) -> Result<ExecOutput, ShellError> {
    program.verify_unchanged()?;
    run_held(program, args, opts, true)
}

/// Runs the held file without looking at the path again. `use_pidfd: false` forces
/// the fallback for kernels (or seccomp filters) without `pidfd_open`.
fn run_held(
    program: &Program,
    args: &[String],
    opts: ExecOptions<'_>,
    use_pidfd: bool,
) -> Result<ExecOutput, ShellError> {
    let image = ExecImage::new(program, args, &opts.env)?;
    // Duplicates at fd >= 3, so the child's stdio setup (dup2 onto 0..2, done
    // before our hook runs) can never clobber them.
    let prog_fd = rustix::io::fcntl_dupfd_cloexec(&program.fd, 3)
        .map_err(|e| program.io_error("duplicate the program's file handle", e))?;
    let cwd_fd = rustix::io::fcntl_dupfd_cloexec(opts.cwd.as_fd(), 3)
        .map_err(|e| program.io_error("duplicate the working directory handle", e))?;
    let hook = ChildHook {
        prog: prog_fd.as_raw_fd(),
        cwd: cwd_fd.as_raw_fd(),
        // A script's interpreter opens /dev/fd/N, so N must survive the exec.
        keep_prog_open: program.script,
        image,
    };

    // std supplies fork, pipes, process group and signal reset; our hook then execs
    // the held fd. It never returns Ok, so std's own execvp of this path never runs.
    let mut cmd = Command::new(&program.path);
    cmd.env_clear()
        .stdin(if opts.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the hook only makes async-signal-safe syscalls (fchdir, fcntl, fexecve)
    // on data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || hook.exec());
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ShellError::Spawn {
        name: program.name.clone(),
        path: program.path.clone(),
        script: program.script,
        source,
    })?;
    drop(cmd);
    drop((prog_fd, cwd_fd));

    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut running = Running::new(child);
    let mut feed = Feed::new(pipes.0.map(OwnedFd::from), opts.stdin.unwrap_or_default());
    let mut out = Capture::new(pipes.1.map(OwnedFd::from), opts.max_output_bytes);
    let mut err = Capture::new(pipes.2.map(OwnedFd::from), opts.max_output_bytes);
    for fd in [feed.fd.as_ref(), out.fd.as_ref(), err.fd.as_ref()]
        .into_iter()
        .flatten()
    {
        rustix::fs::fcntl_setfl(fd, OFlags::NONBLOCK).map_err(|e| program.io_error("make a pipe non-blocking", e))?;
    }
    feed.write_some()
        .map_err(|e| program.io_error("write to its stdin", e))?;

    let deadline = start.checked_add(opts.timeout);
    // A pidfd turns the child's exit into a poll event; without one, poll in slices.
    let pidfd = use_pidfd
        .then(|| rustix::process::pidfd_open(running.pid, PidfdFlags::empty()).ok())
        .flatten();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut timed_out = false;
    let mut exited_at: Option<Instant> = None;
    loop {
        if exited_at.is_none() && running.has_exited() {
            // Not reaped yet: the zombie keeps its pid (= the group id) from being
            // reused, so this kill reaches only what it left behind.
            running.kill_group();
            exited_at = Some(Instant::now());
            feed.fd = None;
        }
        let now = Instant::now();
        let wake = match exited_at {
            Some(_) if out.fd.is_none() && err.fd.is_none() => break,
            // Only a process that left the group can still hold the pipes.
            Some(at) if now >= at + DRAIN_GRACE => break,
            Some(at) => at + DRAIN_GRACE,
            None if timed_out => now + POLL_SLICE,
            None => match deadline {
                Some(deadline) if now >= deadline => {
                    timed_out = true;
                    running.kill_all();
                    now + POLL_SLICE
                }
                Some(deadline) => deadline,
                None => now + Duration::from_secs(3600),
            },
        };
        let mut wait = wake.saturating_duration_since(now);
        if pidfd.is_none() && exited_at.is_none() {
            wait = wait.min(POLL_SLICE);
        }

        let mut ready = [false; 3];
        {
            let mut set = Vec::with_capacity(4);
            let mut roles = Vec::with_capacity(4);
            if let Some(fd) = &feed.fd {
                set.push(PollFd::new(fd, PollFlags::OUT));
                roles.push(0);
            }
            if let Some(fd) = &out.fd {
                set.push(PollFd::new(fd, PollFlags::IN));
                roles.push(1);
            }
            if let Some(fd) = &err.fd {
                set.push(PollFd::new(fd, PollFlags::IN));
                roles.push(2);
            }
            if let (Some(fd), None) = (&pidfd, exited_at) {
                set.push(PollFd::new(fd, PollFlags::IN));
                roles.push(3);
            }
            let timeout = Timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            };
            match rustix::event::poll(&mut set, Some(&timeout)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(program.io_error("wait for its output", e)),
            }
            for (pfd, role) in set.iter().zip(roles) {
                if role < 3 && !pfd.revents().is_empty() {
                    ready[role] = true;
                }
            }
        }
        if ready[0] {
            feed.write_some()
                .map_err(|e| program.io_error("write to its stdin", e))?;
        }
        if ready[1] {
            out.read_some(&mut scratch)
                .map_err(|e| program.io_error("read its stdout", e))?;
        }
        if ready[2] {
            err.read_some(&mut scratch)
                .map_err(|e| program.io_error("read its stderr", e))?;
        }
    }
    drop((out.fd.take(), err.fd.take()));
    let status = running
        .reap()
        .map_err(|e| program.io_error("collect its exit status", e))?;
    Ok(ExecOutput {
        status,
        stdout: out.buf,
        stdout_truncated: out.truncated,
        stderr: err.buf,
        stderr_truncated: err.truncated,
        timed_out,
        duration: start.elapsed(),
    })
}

/// argv and envp as C arrays, built before the fork (the child may not allocate).
struct ExecImage {
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

// SAFETY: the pointers point into the CStrings owned alongside them (heap buffers
// that do not move with the Vec) and are only read.
unsafe impl Send for ExecImage {}
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn new(program: &Program, args: &[String], env: &[(String, String)]) -> Result<ExecImage, ShellError> {
        let invalid = |what: String| ShellError::InvalidArgument {
            name: program.name.clone(),
            what,
        };
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(CString::new(program.name.as_str()).map_err(|_| invalid("its name contains a NUL byte".into()))?);
        for (i, arg) in args.iter().enumerate() {
            argv.push(CString::new(arg.as_str()).map_err(|_| invalid(format!("args[{i}] contains a NUL byte")))?);
        }
        let mut envp = Vec::with_capacity(env.len());
        let mut seen = std::collections::HashSet::new();
        for (key, value) in env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(format!(
                    "environment variable name {key:?} is invalid (it must be non-empty, without '=' or NUL)"
                )));
            }
            if value.contains('\0') {
                return Err(invalid(format!(
                    "the value of environment variable {key:?} contains a NUL byte"
                )));
            }
            if !seen.insert(key.as_str()) {
                return Err(invalid(format!("environment variable {key:?} is given twice")));
            }
            envp.push(CString::new(format!("{key}={value}")).expect("NULs were rejected above"));
        }
        let argv_ptrs = argv.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
        let envp_ptrs = envp.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
        argv.extend(envp);
        Ok(ExecImage {
            _strings: argv,
            argv: argv_ptrs,
            envp: envp_ptrs,
        })
    }
}

/// Runs in the forked child after std set up stdio, the process group and signals.
struct ChildHook {
    prog: RawFd,
    cwd: RawFd,
    keep_prog_open: bool,
    image: ExecImage,
}

impl ChildHook {
    fn exec(&self) -> io::Result<()> {
        // SAFETY: plain syscalls on fds that are open in the child and on arrays
        // that stay alive (the hook owns them) and are NULL-terminated.
        unsafe {
            if libc::fchdir(self.cwd) != 0 {
                return Err(io::Error::last_os_error());
            }
            if self.keep_prog_open && libc::fcntl(self.prog, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // execveat(fd, "", AT_EMPTY_PATH): the held inode, whatever the path says now.
            libc::fexecve(self.prog, self.image.argv.as_ptr(), self.image.envp.as_ptr());
        }
        Err(io::Error::last_os_error())
    }
}

/// The spawned child; killed with its group and reaped if dropped early.
struct Running {
    child: Option<Child>,
    pid: Pid,
}

impl Running {
    fn new(child: Child) -> Running {
        let pid = Pid::from_child(&child);
        Running {
            child: Some(child),
            pid,
        }
    }

    /// Whether the child has exited, without reaping it.
    fn has_exited(&self) -> bool {
        match rustix::process::waitid(
            WaitId::Pid(self.pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ) {
            Ok(status) => status.is_some(),
            Err(Errno::INTR) => false,
            // Nothing to wait for: treat as gone rather than spin until the deadline.
            Err(_) => true,
        }
    }

    /// The group the child leads (its descendants, unless they moved away).
    fn kill_group(&self) {
        let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
    }

    /// The group and the child itself, even if it left its group.
    fn kill_all(&mut self) {
        self.kill_group();
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
    }

    fn reap(mut self) -> io::Result<ExitStatus> {
        let mut child = self.child.take().expect("reaped once");
        let status = child.wait()?;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Exited(code),
            (None, Some(sig)) => ExitStatus::Signaled(sig),
            (None, None) => ExitStatus::Signaled(0),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill_all();
            if let Some(child) = &mut self.child {
                let _ = child.wait();
            }
        }
    }
}

/// Our end of the child's stdin.
struct Feed {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    pos: usize,
}

impl Feed {
    fn new(fd: Option<OwnedFd>, data: Vec<u8>) -> Feed {
        Feed { fd, data, pos: 0 }
    }

    /// Writes what the pipe takes; closes it when all is written or the child
    /// stopped reading.
    fn write_some(&mut self) -> io::Result<()> {
        for _ in 0..IO_ROUNDS {
            let Some(fd) = &self.fd else { return Ok(()) };
            if self.pos == self.data.len() {
                self.fd = None;
                return Ok(());
            }
            let end = self.data.len().min(self.pos + READ_CHUNK);
            match rustix::io::write(fd, &self.data[self.pos..end]) {
                Ok(n) => self.pos += n,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(Errno::PIPE) => {
                    self.fd = None;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Our end of stdout or stderr, keeping at most `cap` bytes.
struct Capture {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn new(fd: Option<OwnedFd>, cap: usize) -> Capture {
        Capture {
            fd,
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }

    fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        for _ in 0..IO_ROUNDS {
            let Some(fd) = &self.fd else { return Ok(()) };
            match rustix::io::read(fd, &mut *scratch) {
                Ok(0) => {
                    self.fd = None;
                    return Ok(());
                }
                Ok(n) => {
                    let keep = n.min(self.cap - self.buf.len());
                    self.buf.extend_from_slice(&scratch[..keep]);
                    self.truncated |= keep < n;
                }
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn system_path() -> Vec<PathBuf> {
        ["/usr/local/bin", "/usr/bin", "/bin"]
            .iter()
            .map(PathBuf::from)
            .collect()
    }

    fn resolve(name: &str) -> Program {
        resolve_program(name, &system_path()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn open_dir(path: &Path) -> Dir {
        Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(name: &str, argv: &[&str], opts: ExecOptions<'_>) -> ExecOutput {
        exec(&resolve(name), &args(argv), opts).unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    fn write_script(path: &Path, body: &str) {
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Whether a pid is gone or a zombie (dead, awaiting its new parent's wait).
    fn is_dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
        }
    }

    fn wait_dead(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if is_dead(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn resolves_to_an_absolute_file_with_its_identity_and_digest() {
        let sh = resolve("sh");
        assert_eq!(sh.name(), "sh");
        assert!(sh.path().is_absolute() && sh.path().ends_with("sh"), "{sh:?}");
        let bytes = std::fs::read(sh.real_path()).unwrap();
        assert_eq!(sh.digest_hex(), hex::encode(Sha256::digest(&bytes)));
        assert_eq!(sh.size(), bytes.len() as u64);
        let meta = std::fs::metadata(sh.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(sh.dev_ino(), (meta.dev(), meta.ino()));
        assert!(!sh.is_script());
        sh.verify_unchanged().unwrap();
    }

    #[test]
    fn symlinks_on_the_search_path_are_followed_to_the_real_file() {
        let tmp = tempfile::tempdir().unwrap();
        write_script(&tmp.path().join("tool-1.2"), "#!/bin/sh\necho v1.2\n");
        symlink("tool-1.2", tmp.path().join("tool")).unwrap();
        let tool = resolve_program("tool", &[tmp.path().to_path_buf()]).unwrap();
        assert_eq!(tool.path(), tmp.path().join("tool"));
        assert_eq!(tool.real_path().file_name().unwrap(), "tool-1.2");
        assert!(tool.is_script());
        let cwd = open_dir(tmp.path());
        let out = exec(&tool, &[], ExecOptions::new(&cwd)).unwrap();
        assert_eq!(text(&out.stdout), "v1.2\n");
    }

    #[test]
    fn names_that_are_not_bare_are_rejected_naming_the_token() {
        for (name, needle) in [
            ("", "empty"),
            ("/bin/sh", "'/'"),
            ("../sh", "'/'"),
            ("bin/sh", "'/'"),
            ("..", "directory"),
            (".", "directory"),
            ("sh -c", "whitespace"),
            ("sh\t", "whitespace"),
            ("s\0h", "NUL"),
            ("sh\u{1b}[31m", "control"),
            ("s\u{202e}h", "formatting"),
            ("s\u{200b}h", "formatting"),
        ] {
            match resolve_program(name, &system_path()) {
                Err(err @ ShellError::InvalidName { .. }) => {
                    let msg = err.to_string();
                    assert!(msg.contains(needle), "{name:?}: {msg}");
                    assert!(msg.contains(&format!("{name:?}")), "{name:?}: {msg}");
                    assert!(
                        !msg.chars().any(|c| c.is_control() || is_invisible_format(c)),
                        "{msg:?}"
                    );
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            resolve_program(&long, &system_path()),
            Err(ShellError::InvalidName { .. })
        ));
    }

    #[test]
    fn missing_programs_list_the_directories_searched() {
        let err = resolve_program("no-such-program-alos", &system_path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ShellError::NotFound { .. }), "{msg}");
        assert!(
            msg.contains("\"no-such-program-alos\"") && msg.contains("\"/usr/bin\"") && msg.contains("\"/bin\""),
            "{msg}"
        );
        let err = resolve_program("sh", &[]).unwrap_err();
        assert!(err.to_string().contains("empty search path"), "{err}");
    }

    #[test]
    fn relative_search_directories_are_refused() {
        let err = resolve_program("sh", &[PathBuf::from("bin")]).unwrap_err();
        assert!(matches!(err, ShellError::InvalidSearchPath { .. }), "{err}");
        assert!(err.to_string().contains("not an absolute path"), "{err}");
    }

    #[test]
    fn non_executables_are_skipped_and_reported() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::write(first.path().join("tool"), "#!/bin/sh\necho no\n").unwrap(); // mode 0644
        std::fs::create_dir(first.path().join("sub")).unwrap();
        write_script(&second.path().join("tool"), "#!/bin/sh\necho yes\n");

        let err = resolve_program("tool", &[first.path().to_path_buf()]).unwrap_err();
        assert!(matches!(err, ShellError::NotExecutable { .. }), "{err}");
        assert!(err.to_string().contains("not executable"), "{err}");
        let err = resolve_program("sub", &[first.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");

        let dirs = [first.path().to_path_buf(), second.path().to_path_buf()];
        let tool = resolve_program("tool", &dirs).unwrap();
        assert_eq!(tool.path(), second.path().join("tool"));
    }

    #[test]
    fn arguments_are_passed_literally_never_interpreted() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let out = run(
            "echo",
            &["$(id)", ";", "|", "a b", "\"q\" 'r'", "*", "`id`"],
            ExecOptions::new(&cwd),
        );
        assert_eq!(text(&out.stdout), "$(id) ; | a b \"q\" 'r' * `id`\n");
        assert!(out.status.success());

        // Each argument arrives as exactly one argv entry, and argv[0] is the bare name.
        let out = run(
            "sh",
            &[
                "-c",
                r#"printf '[%s]\n' "$@"; tr '\0' ' ' < /proc/$$/cmdline"#,
                "zero",
                "a b",
                "$HOME",
                "",
            ],
            ExecOptions::new(&cwd),
        );
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("[a b]\n[$HOME]\n[]\nsh -c "), "{stdout}");
    }

    #[test]
    fn stdin_is_piped_and_large_streams_do_not_deadlock() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let mut opts = ExecOptions::new(&cwd);
        opts.stdin = Some(b"hello\0world\n".to_vec());
        assert_eq!(run("cat", &[], opts).stdout, b"hello\0world\n");

        // 4 MiB through cat: we must write stdin and read stdout at the same time.
        let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let mut opts = ExecOptions::new(&cwd);
        opts.stdin = Some(big.clone());
        opts.max_output_bytes = 8 << 20;
        let out = run("cat", &[], opts);
        assert!(out.stdout == big && !out.stdout_truncated);

        // No stdin given: /dev/null, so cat ends at once.
        let out = run("cat", &[], ExecOptions::new(&cwd));
        assert!(out.stdout.is_empty() && out.status.success());

        // A child that ignores its input does not make us fail.
        let mut opts = ExecOptions::new(&cwd);
        opts.stdin = Some(vec![b'x'; 1 << 20]);
        let out = run("true", &[], opts);
        assert!(out.status.success());
    }

    #[test]
    fn the_environment_is_exactly_what_was_passed() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        // This test process has PATH, HOME, ...: none of it reaches the child.
        assert!(std::env::var_os("PATH").is_some());
        let out = run("env", &[], ExecOptions::new(&cwd));
        assert_eq!(text(&out.stdout), "");

        let mut opts = ExecOptions::new(&cwd);
        opts.env = vec![("FOO".into(), "bar baz".into()), ("EMPTY".into(), String::new())];
        let out = run("env", &[], opts);
        assert_eq!(text(&out.stdout), "FOO=bar baz\nEMPTY=\n");

        for (key, value, needle) in [("A=B", "x", "invalid"), ("", "x", "invalid"), ("K", "a\0b", "NUL")] {
            let mut opts = ExecOptions::new(&cwd);
            opts.env = vec![(key.into(), value.into())];
            let err = exec(&resolve("env"), &[], opts).unwrap_err();
            assert!(
                matches!(err, ShellError::InvalidArgument { .. }) && err.to_string().contains(needle),
                "{err}"
            );
        }
        let mut opts = ExecOptions::new(&cwd);
        opts.env = vec![("K".into(), "1".into()), ("K".into(), "2".into())];
        let err = exec(&resolve("env"), &[], opts).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        let err = exec(&resolve("echo"), &args(&["ok", "a\0b"]), ExecOptions::new(&cwd)).unwrap_err();
        assert!(err.to_string().contains("args[1] contains a NUL byte"), "{err}");
    }

    #[test]
    fn the_working_directory_is_the_handle_not_a_path() {
        let tmp = tempfile::tempdir().unwrap();
        let before = tmp.path().join("before");
        std::fs::create_dir(&before).unwrap();
        std::fs::write(before.join("note.txt"), "inside\n").unwrap();
        let cwd = open_dir(&before);
        // Moving the directory after the handle was opened: the child still lands in it.
        let after = tmp.path().join("after");
        std::fs::rename(&before, &after).unwrap();
        std::fs::create_dir(&before).unwrap();

        let out = run("pwd", &["-P"], ExecOptions::new(&cwd));
        assert_eq!(
            text(&out.stdout).trim_end(),
            std::fs::canonicalize(&after).unwrap().to_str().unwrap()
        );
        let out = run("cat", &["note.txt"], ExecOptions::new(&cwd));
        assert_eq!(text(&out.stdout), "inside\n");
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let out = run("sh", &["-c", "echo oops >&2; exit 3"], ExecOptions::new(&cwd));
        assert_eq!(out.status, ExitStatus::Exited(3));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(text(&out.stderr), "oops\n");
        let out = run("sh", &["-c", "kill -TERM $$"], ExecOptions::new(&cwd));
        assert_eq!(out.status, ExitStatus::Signaled(15));
        assert!(!out.timed_out);
    }

    #[test]
    fn a_timeout_kills_the_program_and_its_grandchildren() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let mut opts = ExecOptions::new(&cwd);
        opts.timeout = Duration::from_millis(300);
        let out = run("sleep", &["30"], opts);
        assert!(out.timed_out);
        assert_eq!(out.status, ExitStatus::Signaled(9));
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);

        // The grandchild holds stdout open too: the call returns only because the
        // whole group died.
        let mut opts = ExecOptions::new(&cwd);
        opts.timeout = Duration::from_millis(300);
        let out = run("sh", &["-c", "sleep 30 & echo $!; wait"], opts);
        assert!(out.timed_out && out.duration < Duration::from_secs(5), "{out:?}");
        let grandchild: i32 = text(&out.stdout).trim().parse().unwrap();
        assert!(wait_dead(grandchild), "grandchild {grandchild} survived the timeout");
    }

    #[test]
    fn background_leftovers_die_when_the_program_exits() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let out = run("sh", &["-c", "sleep 30 & echo $!"], ExecOptions::new(&cwd));
        assert!(out.status.success() && !out.timed_out);
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
        let leftover: i32 = text(&out.stdout).trim().parse().unwrap();
        assert!(wait_dead(leftover), "background process {leftover} outlived the call");
    }

    #[test]
    fn output_is_capped_and_the_pipes_keep_draining() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let mut opts = ExecOptions::new(&cwd);
        opts.max_output_bytes = 4096;
        let out = run("sh", &["-c", "head -c 10485760 /dev/zero; echo done >&2"], opts);
        // head ran to completion: the pipe never filled up and blocked it.
        assert!(out.status.success() && !out.timed_out, "{:?}", out.status);
        assert_eq!(out.stdout.len(), 4096);
        assert!(out.stdout_truncated);
        assert_eq!(text(&out.stderr), "done\n");
        assert!(!out.stderr_truncated);

        // An endless writer: bounded by the timeout, still capped.
        let mut opts = ExecOptions::new(&cwd);
        opts.max_output_bytes = 1000;
        opts.timeout = Duration::from_millis(300);
        let out = run("yes", &[], opts);
        assert!(out.timed_out && out.stdout_truncated && out.stdout.len() == 1000);

        let mut opts = ExecOptions::new(&cwd);
        opts.max_output_bytes = 0;
        let out = run("echo", &["x"], opts);
        assert!(out.stdout.is_empty() && out.stdout_truncated);
        let out = run("echo", &["x"], ExecOptions::new(&cwd));
        assert!(!out.stdout_truncated);
    }

    #[test]
    fn without_a_pidfd_exits_and_timeouts_are_still_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let sh = resolve("sh");
        let out = run_held(&sh, &args(&["-c", "echo hi; exit 4"]), ExecOptions::new(&cwd), false).unwrap();
        assert_eq!((text(&out.stdout), out.status), ("hi\n", ExitStatus::Exited(4)));

        let out = run_held(&sh, &args(&["-c", "sleep 30 & echo $!"]), ExecOptions::new(&cwd), false).unwrap();
        assert!(out.status.success() && out.duration < Duration::from_secs(5), "{out:?}");
        assert!(wait_dead(text(&out.stdout).trim().parse().unwrap()));

        let mut opts = ExecOptions::new(&cwd);
        // Long enough for the shell to print the pid even on a loaded machine; the
        // `wait` keeps it alive well past it.
        opts.timeout = Duration::from_secs(2);
        let out = run_held(&sh, &args(&["-c", "sleep 30 & echo $!; wait"]), opts, false).unwrap();
        assert!(out.timed_out && out.status == ExitStatus::Signaled(9), "{out:?}");
        assert!(wait_dead(text(&out.stdout).trim().parse().unwrap()));
    }

    /// A temp dir holding `prog` (printing `original`) resolved from it.
    fn resolved_original(tmp: &Path) -> Program {
        write_script(&tmp.join("prog"), "#!/bin/sh\necho original\n");
        resolve_program("prog", &[tmp.to_path_buf()]).unwrap()
    }

    fn held_output(program: &Program, cwd: &Dir) -> String {
        let out = run_held(program, &[], ExecOptions::new(cwd), true).unwrap();
        text(&out.stdout).to_string()
    }

    #[test]
    fn swap_by_rename_over_is_refused_and_never_runs_the_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let prog = resolved_original(tmp.path());
        assert_eq!(
            text(&exec(&prog, &[], ExecOptions::new(&cwd)).unwrap().stdout),
            "original\n"
        );

        write_script(&tmp.path().join("prog.new"), "#!/bin/sh\necho swapped\n");
        std::fs::rename(tmp.path().join("prog.new"), tmp.path().join("prog")).unwrap();

        let err = exec(&prog, &[], ExecOptions::new(&cwd)).unwrap_err();
        assert!(matches!(err, ShellError::ProgramChanged { .. }), "{err}");
        assert!(err.to_string().contains("different file"), "{err}");
        // Even past the check (a swap racing it), the held file is what runs.
        assert_eq!(held_output(&prog, &cwd), "original\n");
        // Resolving again sees the new file, with a different digest to approve.
        let again = resolve_program("prog", &[tmp.path().to_path_buf()]).unwrap();
        assert_ne!(again.digest(), prog.digest());
        assert_eq!(
            text(&exec(&again, &[], ExecOptions::new(&cwd)).unwrap().stdout),
            "swapped\n"
        );
    }

    #[test]
    fn swap_by_repointing_a_symlink_is_refused_and_never_runs_the_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        write_script(&tmp.path().join("good.sh"), "#!/bin/sh\necho original\n");
        write_script(&tmp.path().join("evil.sh"), "#!/bin/sh\necho swapped\n");
        symlink("good.sh", tmp.path().join("prog")).unwrap();
        let prog = resolve_program("prog", &[tmp.path().to_path_buf()]).unwrap();

        symlink("evil.sh", tmp.path().join("prog.tmp")).unwrap();
        std::fs::rename(tmp.path().join("prog.tmp"), tmp.path().join("prog")).unwrap();

        let err = exec(&prog, &[], ExecOptions::new(&cwd)).unwrap_err();
        assert!(matches!(err, ShellError::ProgramChanged { .. }), "{err}");
        assert_eq!(held_output(&prog, &cwd), "original\n");
    }

    #[test]
    fn changes_in_place_and_removal_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        let prog = resolved_original(tmp.path());
        std::fs::write(tmp.path().join("prog"), "#!/bin/sh\necho swapped\n").unwrap(); // same inode
        let err = exec(&prog, &[], ExecOptions::new(&cwd)).unwrap_err();
        assert!(err.to_string().contains("modified in place"), "{err}");

        let tmp = tempfile::tempdir().unwrap();
        let prog = resolved_original(tmp.path());
        std::fs::remove_file(tmp.path().join("prog")).unwrap();
        let err = exec(&prog, &[], ExecOptions::new(&cwd)).unwrap_err();
        assert!(err.to_string().contains("no longer leads to a file"), "{err}");
        assert_eq!(held_output(&prog, &cwd), "original\n");
    }

    #[test]
    fn a_swapped_binary_still_runs_the_held_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        std::fs::copy(resolve("echo").real_path(), tmp.path().join("prog")).unwrap();
        let prog = resolve_program("prog", &[tmp.path().to_path_buf()]).unwrap();
        assert!(!prog.is_script());
        write_script(&tmp.path().join("prog.new"), "#!/bin/sh\necho swapped\n");
        std::fs::rename(tmp.path().join("prog.new"), tmp.path().join("prog")).unwrap();
        assert!(exec(&prog, &args(&["held"]), ExecOptions::new(&cwd)).is_err());
        let out = run_held(&prog, &args(&["held"]), ExecOptions::new(&cwd), true).unwrap();
        assert_eq!(text(&out.stdout), "held\n");
    }

    #[test]
    fn spawn_failures_say_what_was_attempted() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = open_dir(tmp.path());
        write_script(&tmp.path().join("orphan"), "#!/nonexistent/interpreter\n");
        let prog = resolve_program("orphan", &[tmp.path().to_path_buf()]).unwrap();
        let err = exec(&prog, &[], ExecOptions::new(&cwd)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ShellError::Spawn { .. }), "{msg}");
        assert!(
            msg.contains("cannot start program \"orphan\"") && msg.contains("interpreter"),
            "{msg}"
        );
    }
}
