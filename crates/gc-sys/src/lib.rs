//! The operating-system edge of the endpoint: the one crate of the workspace that may use
//! `unsafe`, `libc` and PAM (ENDPOINT §4.5 "host auth").
//!
//! * [`Identity`] — the target user of a privilege drop: uid, gid and the supplementary groups,
//!   all looked up **before** the fork (lookups allocate and take locks).
//! * [`drop_before_exec`] installs a `pre_exec` hook on a [`std::process::Command`] that, in the
//!   forked child and before `exec`, does only async-signal-safe system calls: `setsid`,
//!   `umask`, `setgroups`, `setresgid`, `setresuid`, clearing every capability set, clearing the
//!   ambient set, `PR_SET_NO_NEW_PRIVS`, a check that `setuid(0)` now fails, and marking every
//!   descriptor above 2 close-on-exec.
//! * [`drop_now`] does the identity switch in the calling (single-threaded) process, for the PAM
//!   path where the switch happens inside an open PAM session.
//! * [`pam`] — a small safe wrapper over libpam (`pam_start` … `pam_end`).
//! * [`credfd`] — the Fernet-encrypted credential memfd a user endpoint reads at descriptor 3.
//!
//! ```no_run
//! use gc_sys::{Gid, Identity, Uid};
//! let who = Identity { uid: Uid(1234), gid: Gid(1234), groups: vec![Gid(1234), Gid(27)] };
//! let mut cmd = std::process::Command::new("/usr/bin/id");
//! gc_sys::drop_before_exec(&mut cmd, who, gc_sys::DropOptions::default());
//! let out = cmd.output()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Every `unsafe` block sits in a small function whose safe signature makes misuse impossible,
//! with a `// SAFETY:` comment (enforced by `clippy::undocumented_unsafe_blocks`).

pub mod credfd;
pub mod pam;

use std::io;

/// A user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub u32);

/// A group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gid(pub u32);

/// Whom a process becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Real, effective and saved user id.
    pub uid: Uid,
    /// Real, effective and saved group id.
    pub gid: Gid,
    /// The complete supplementary group list (`getgrouplist`, computed before the fork).
    pub groups: Vec<Gid>,
}

/// The steps of a privilege drop, in order; a failure names the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `setsid()`.
    Setsid,
    /// `setgroups(groups)`.
    Setgroups,
    /// `setresgid(gid, gid, gid)`.
    Setresgid,
    /// `setresuid(uid, uid, uid)`.
    Setresuid,
    /// `capset` with every set empty, and clearing the ambient set.
    DropCapabilities,
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    NoNewPrivs,
    /// `setuid(0)` succeeded after the drop: the drop did not hold.
    RegainCheck,
    /// Marking descriptors above 2 close-on-exec.
    CloseDescriptors,
}

impl Step {
    /// The exit status of this step in the uid-change column of upstream's start ladder
    /// (ENDPOINT §4.5, PROTOCOL-ENDPOINT §5.5): 71 `setresgid` (and the session start done
    /// first here), 72 `initgroups`/`setgroups`, 73 `setresuid`, 74 capability drop,
    /// `no_new_privs` and the regain check, 75 `setsid`, 86 the descriptor clean-up.
    #[must_use]
    pub const fn ladder_exit_code(self) -> i32 {
        match self {
            Step::Setresgid => 71,
            Step::Setgroups => 72,
            Step::Setresuid => 73,
            Step::DropCapabilities | Step::NoNewPrivs | Step::RegainCheck => 74,
            Step::Setsid => 75,
            Step::CloseDescriptors => 86,
        }
    }

    /// The step's name for diagnostics (a static string: usable between fork and exec).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Step::Setsid => "setsid",
            Step::Setgroups => "setgroups",
            Step::Setresgid => "setresgid",
            Step::Setresuid => "setresuid",
            Step::DropCapabilities => "drop capabilities",
            Step::NoNewPrivs => "no_new_privs",
            Step::RegainCheck => "regain check",
            Step::CloseDescriptors => "close-on-exec marking",
        }
    }
}

/// A failed step of a privilege drop.
#[derive(Debug, thiserror::Error)]
#[error("{step:?} failed: {source}")]
pub struct DropError {
    /// Which step.
    pub step: Step,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// What else happens around the identity switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropOptions {
    /// Start a new session (and process group) first.
    pub setsid: bool,
    /// Clear the effective, permitted, inheritable and ambient capability sets.
    pub clear_capabilities: bool,
    /// Set `PR_SET_NO_NEW_PRIVS` (setuid programs stop elevating).
    pub no_new_privs: bool,
    /// The umask to set (`0o077` upstream).
    pub umask: u32,
    /// Mark every descriptor above 2 close-on-exec (only for [`drop_before_exec`]).
    pub cloexec_above_stdio: bool,
    /// Only for [`drop_before_exec`]: on a failed step, write one line
    /// `privilege drop failed: <step> (errno <n>)` to descriptor 2 and exit the child with
    /// [`Step::ladder_exit_code`] instead of failing the spawn with the bare errno, so the
    /// parent learns which step failed from the exit status.
    pub exit_on_failure: bool,
}

impl Default for DropOptions {
    /// The non-PAM path of ENDPOINT §4.5: everything on, umask 077.
    fn default() -> Self {
        DropOptions {
            setsid: true,
            clear_capabilities: true,
            no_new_privs: true,
            umask: 0o077,
            cloexec_above_stdio: true,
            exit_on_failure: false,
        }
    }
}

/// `-1` → the current `errno` as an error.
fn check(ret: libc::c_long) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Raw system calls (no libc wrapper logic, no allocation, no locks): safe to run between
/// `fork` and `exec` of a multithreaded parent, where the child has exactly one thread.
mod raw {
    use super::check;
    use std::io;

    pub(super) fn setsid() -> io::Result<()> {
        // SAFETY: setsid takes no arguments and only changes this process's session.
        check(unsafe { libc::syscall(libc::SYS_setsid) })
    }

    pub(super) fn umask(mask: u32) {
        // SAFETY: umask cannot fail and touches no memory.
        unsafe { libc::syscall(libc::SYS_umask, libc::c_long::from(mask)) };
    }

    pub(super) fn setgroups(groups: &[u32]) -> io::Result<()> {
        // SAFETY: the pointer and length describe a live slice of gid_t (u32) for the whole
        // call; the kernel only reads it.
        check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })
    }

    pub(super) fn setresgid(gid: u32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
    }

    pub(super) fn setresuid(uid: u32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }

    pub(super) fn setuid(uid: u32) -> io::Result<()> {
        // SAFETY: integer argument only.
        check(unsafe { libc::syscall(libc::SYS_setuid, uid) })
    }

    /// `struct __user_cap_header_struct`.
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }

    /// `struct __user_cap_data_struct`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    /// `_LINUX_CAPABILITY_VERSION_3`: two data elements (64 capability bits).
    const CAP_V3: u32 = 0x2008_0522;

    pub(super) fn clear_capabilities() -> io::Result<()> {
        let header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: header and data are live, correctly laid out (#[repr(C)]) values of the
        // version-3 ABI (one header, two data elements); the kernel only reads them.
        check(unsafe {
            libc::syscall(libc::SYS_capset, std::ptr::from_ref(&header), data.as_ptr())
        })?;
        // SAFETY: integer arguments only.
        check(unsafe {
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        })
    }

    pub(super) fn no_new_privs() -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }

    pub(super) fn dup2(src: i32, target: i32) -> io::Result<()> {
        // SAFETY: integer arguments only; dup2 onto `target` replaces whatever was there,
        // and the new descriptor is not close-on-exec.
        check(unsafe { libc::syscall(libc::SYS_dup2, src, target) })
    }

    pub(super) fn clear_cloexec(fd: i32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, 0) })
    }

    pub(super) fn write_stderr(bytes: &[u8]) {
        // SAFETY: the pointer and length describe a live slice; the kernel only reads it. A
        // failed write is ignored (nothing else can be done before exit).
        unsafe { libc::syscall(libc::SYS_write, 2, bytes.as_ptr(), bytes.len()) };
    }

    pub(super) fn exit(status: i32) -> ! {
        // SAFETY: _exit ends the process at once (no atexit handlers, no unwinding): the
        // right exit for a forked child that must not run the parent's clean-up.
        unsafe { libc::_exit(status) }
    }

    pub(super) fn set_parent_death_signal(sig: i32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) })
    }

    pub(super) fn getppid() -> libc::c_long {
        // SAFETY: getppid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) }
    }

    pub(super) fn kill_self(sig: i32) {
        // SAFETY: getpid and kill take integers only; the signal goes to this process.
        unsafe {
            let me = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_kill, me, sig);
        }
    }

    pub(super) fn cloexec_from(first: u32) -> io::Result<()> {
        // SAFETY: integer arguments only; CLOSE_RANGE_CLOEXEC marks, it closes nothing, so
        // descriptors owned by the standard library's spawn code stay valid.
        check(unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        })
    }
}

/// The drop itself, with only raw system calls and no allocation: shared by the `pre_exec`
/// hook and [`drop_now`].
fn apply(uid: u32, gid: u32, groups: &[u32], opts: DropOptions) -> Result<(), DropError> {
    let at = |step: Step| move |source: io::Error| DropError { step, source };
    if opts.setsid {
        raw::setsid().map_err(at(Step::Setsid))?;
    }
    raw::umask(opts.umask);
    raw::setgroups(groups).map_err(at(Step::Setgroups))?;
    raw::setresgid(gid).map_err(at(Step::Setresgid))?;
    raw::setresuid(uid).map_err(at(Step::Setresuid))?;
    if opts.clear_capabilities {
        raw::clear_capabilities().map_err(at(Step::DropCapabilities))?;
    }
    if opts.no_new_privs {
        raw::no_new_privs().map_err(at(Step::NoNewPrivs))?;
    }
    if uid != 0 && raw::setuid(0).is_ok() {
        return Err(DropError {
            step: Step::RegainCheck,
            source: io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    if opts.cloexec_above_stdio {
        raw::cloexec_from(3).map_err(at(Step::CloseDescriptors))?;
    }
    Ok(())
}

/// Makes `cmd`'s child become `who` between fork and exec (see the crate docs for the steps).
/// A failed step makes `spawn` fail with that step's OS error (the step itself is not
/// reported: the hook can only pass an errno back).
///
/// Do not also call `process_group` on `cmd` when `opts.setsid` is set: a process-group leader
/// cannot start a session.
pub fn drop_before_exec(cmd: &mut std::process::Command, who: Identity, opts: DropOptions) {
    use std::os::unix::process::CommandExt;
    let groups: Vec<u32> = who.groups.iter().map(|g| g.0).collect();
    let (uid, gid) = (who.uid.0, who.gid.0);
    let hook = move || {
        apply(uid, gid, &groups, opts).map_err(|e| {
            if opts.exit_on_failure {
                report_and_exit(&e);
            }
            e.source
        })
    };
    // SAFETY: the hook runs in the forked child before exec. It calls only raw system calls
    // (async-signal-safe; the child has a single thread, so per-thread credentials are the
    // process's), reads the group list allocated before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Writes `privilege drop failed: <step> (errno <n>)` to descriptor 2 with a stack buffer
/// only, then exits with the step's ladder status (for the `pre_exec` hook).
fn report_and_exit(e: &DropError) -> ! {
    let mut line = [0u8; 96];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    };
    push(b"privilege drop failed: ");
    push(e.step.name().as_bytes());
    push(b" (errno ");
    let mut digits = [0u8; 12];
    let mut n = e.source.raw_os_error().unwrap_or(0).unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    push(&digits[i..]);
    push(b")\n");
    raw::write_stderr(&line[..len]);
    raw::exit(e.step.ladder_exit_code())
}

/// Keeps exactly descriptors 0–2 and `keep` open across the exec of `cmd` (a `pre_exec`
/// hook): everything else above 2 is marked close-on-exec, the descriptors in `keep` are
/// cleared of it. Register it **last** (after [`place_fd_before_exec`] and any drop), as the
/// final descriptor clean-up before exec (ENDPOINT §4.5 rung 18).
pub fn keep_only_fds_before_exec(cmd: &mut std::process::Command, keep: &[i32]) {
    use std::os::unix::process::CommandExt;
    let keep: Vec<i32> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    let hook = move || {
        raw::cloexec_from(3)?;
        for &fd in &keep {
            raw::clear_cloexec(fd)?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, makes only raw system calls on
    // integers (async-signal-safe) and reads a list allocated before the fork.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Switches this process to `who` now, with the same steps as [`drop_before_exec`] except the
/// descriptor marking. Only for a single-threaded process (the raw calls change the calling
/// thread's credentials): the PAM bootstrap child.
pub fn drop_now(who: &Identity, opts: DropOptions) -> Result<(), DropError> {
    let groups: Vec<u32> = who.groups.iter().map(|g| g.0).collect();
    let opts = DropOptions {
        cloexec_above_stdio: false,
        exit_on_failure: false,
        ..opts
    };
    apply(who.uid.0, who.gid.0, &groups, opts)
}

/// Re-applies the supplementary groups of `who` (after PAM's `pam_setcred` may have changed
/// them, as `initgroups` would) — only while still privileged.
pub fn set_groups(groups: &[Gid]) -> io::Result<()> {
    let raw: Vec<u32> = groups.iter().map(|g| g.0).collect();
    raw::setgroups(&raw)
}

/// A packet-mode pipe (`pipe2(O_DIRECT | O_CLOEXEC)`): each `write` of at most one page
/// arrives as one packet, and a `read` returns at most one packet. Returns (read end, write
/// end), both close-on-exec. Used for the HA audit log (ENDPOINT §4.10).
pub fn packet_pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a live array of two c_ints that the kernel fills; flags are integers.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_DIRECT | libc::O_CLOEXEC) };
    check(libc::c_long::from(ret))?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(pair)
}

/// Makes `fd` appear as descriptor number `target` (not close-on-exec) in `cmd`'s child: a
/// `pre_exec` hook doing `dup2(fd, target)`, or clearing close-on-exec when the numbers are
/// equal. Register it **after** [`drop_before_exec`] (hooks run in order, and the drop marks
/// every descriptor above 2 close-on-exec). `cmd` keeps `fd` open until it is dropped.
pub fn place_fd_before_exec(
    cmd: &mut std::process::Command,
    fd: std::os::fd::OwnedFd,
    target: i32,
) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // A source numbered like another placement's target (3, 4, …) would be overwritten by
    // that placement's dup2 first: move low-numbered sources out of the way beforehand.
    let fd = if fd.as_raw_fd() < 10 && fd.as_raw_fd() != target {
        dup_at_least(&fd, 10).unwrap_or(fd)
    } else {
        fd
    };
    let hook = move || {
        let src = fd.as_raw_fd();
        if src == target {
            raw::clear_cloexec(target)
        } else {
            raw::dup2(src, target)
        }
    };
    // SAFETY: the hook runs in the forked child before exec and makes one raw system call on
    // integers (async-signal-safe, no allocation); `fd` stays open because `cmd` owns it.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// A close-on-exec duplicate of `fd` numbered `min` or above (`F_DUPFD_CLOEXEC`).
fn dup_at_least(fd: &std::os::fd::OwnedFd, min: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open descriptor we borrow; integers only.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    check(libc::c_long::from(new))?;
    // SAFETY: the call succeeded, so `new` is a fresh descriptor owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}

/// Marks every descriptor above 2 close-on-exec in `cmd`'s child (a `pre_exec` hook), so
/// nothing the parent holds without `O_CLOEXEC` (e.g. a jobserver pipe) leaks into it. What
/// [`drop_before_exec`] does too, for a child that keeps the parent's identity.
pub fn cloexec_above_stdio_before_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec and makes one raw system call on
    // integers (async-signal-safe, no allocation).
    unsafe {
        cmd.pre_exec(|| raw::cloexec_from(3));
    }
}

/// Makes `cmd`'s child receive signal `sig` (e.g. `libc::SIGKILL`) when the thread that
/// spawned it exits (`prctl(PR_SET_PDEATHSIG)` in a `pre_exec` hook), so a child cannot outlive
/// a parent that died without cleaning up.
///
/// The race where the parent dies between `fork` and the `prctl` is closed: the hook then sees
/// a parent id different from this process's id (taken when this function is called), sends
/// itself `sig` and, should `sig` be blocked or ignored, fails the exec with `ESRCH`.
///
/// Caveats, both from the kernel:
/// * the signal follows the spawning **thread**, not the process: spawn from a thread that
///   lives as long as the child should (not from a short-lived blocking-pool thread);
/// * a change of the effective uid/gid clears the setting, so register this hook **after**
///   [`drop_before_exec`] (hooks run in the order they were added). Exec of a set-user-id
///   program clears it as well.
pub fn parent_death_signal_before_exec(cmd: &mut std::process::Command, sig: i32) {
    let parent = libc::c_long::from(std::process::id());
    parent_death_signal_for(cmd, sig, parent);
}

/// [`parent_death_signal_before_exec`] with the expected parent id given (tests use a wrong
/// one to take the "parent already gone" branch).
fn parent_death_signal_for(cmd: &mut std::process::Command, sig: i32, parent: libc::c_long) {
    use std::os::unix::process::CommandExt;
    let hook = move || {
        raw::set_parent_death_signal(sig)?;
        if raw::getppid() != parent {
            raw::kill_self(sig);
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec and makes only raw system calls
    // on integers (async-signal-safe, no allocation); the error it may return is built from
    // an errno without allocating.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Takes ownership of descriptor `fd` inherited from the parent (e.g. the audit pipe at 4),
/// after checking that it is open, and marks it close-on-exec so that workers do not inherit
/// it. Each number should be taken once; a second take of the same number yields a second
/// owner of one descriptor, so the caller keeps the result for the life of the process.
pub fn take_inherited_fd(fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 3 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD on an integer descriptor number reads flags only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    check(libc::c_long::from(flags))?;
    // SAFETY: F_SETFD sets the close-on-exec flag of an open descriptor; integers only.
    check(libc::c_long::from(unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)
    }))?;
    // SAFETY: the descriptor is open (F_GETFD succeeded) and was handed to this process by
    // its parent for this purpose; the caller takes it once (documented above).
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The process's credentials and security bits as `/proc/self/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `Uid:` real, effective, saved, filesystem.
    pub uid: Vec<u32>,
    /// `Gid:` real, effective, saved, filesystem.
    pub gid: Vec<u32>,
    /// `Groups:`.
    pub groups: Vec<u32>,
    /// `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`.
    pub cap_inh: u64,
    /// Permitted capabilities.
    pub cap_prm: u64,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Ambient capabilities.
    pub cap_amb: u64,
    /// `NoNewPrivs:`.
    pub no_new_privs: bool,
}

impl Status {
    /// Parses the text of a `/proc/<pid>/status` file (missing fields stay empty/zero).
    #[must_use]
    pub fn parse(text: &str) -> Status {
        let mut s = Status::default();
        let nums = |v: &str| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        };
        let hex = |v: &str| u64::from_str_radix(v.trim(), 16).unwrap_or(0);
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key {
                "Uid" => s.uid = nums(value),
                "Gid" => s.gid = nums(value),
                "Groups" => s.groups = nums(value),
                "CapInh" => s.cap_inh = hex(value),
                "CapPrm" => s.cap_prm = hex(value),
                "CapEff" => s.cap_eff = hex(value),
                "CapAmb" => s.cap_amb = hex(value),
                "NoNewPrivs" => s.no_new_privs = value.trim() == "1",
                _ => {}
            }
        }
        s
    }

    /// This process's status.
    pub fn current() -> io::Result<Status> {
        Ok(Status::parse(&std::fs::read_to_string(
            "/proc/self/status",
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn status_parsing() {
        let s = Status::parse(
            "Name:\tx\nUid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t2 30 \nCapInh:\t0000000000000000\n\
             CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000400\nCapAmb:\t0\nNoNewPrivs:\t1\n",
        );
        assert_eq!(s.uid, [1, 1, 1, 1]);
        assert_eq!(s.groups, [2, 30]);
        assert_eq!(s.cap_prm, 0x1ff_ffff_ffff);
        assert_eq!(s.cap_eff, 0x400);
        assert!(s.no_new_privs);
    }

    /// A throwaway Linux user (and a second group it belongs to), removed on drop.
    struct TestUser {
        name: String,
        group: String,
        uid: u32,
        gid: u32,
        extra_gid: u32,
    }

    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd).args(args).output().expect(cmd);
        assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    impl TestUser {
        fn create(tag: &str) -> TestUser {
            let suffix = format!("{}{}", std::process::id() % 100_000, tag);
            let name = format!("gcsys{suffix}");
            let group = format!("gcsysg{suffix}");
            run("groupadd", &[&group]);
            run("useradd", &["-M", "-G", &group, &name]);
            TestUser {
                uid: run("id", &["-u", &name]).parse().unwrap(),
                gid: run("id", &["-g", &name]).parse().unwrap(),
                extra_gid: run("getent", &["group", &group])
                    .split(':')
                    .nth(2)
                    .unwrap()
                    .parse()
                    .unwrap(),
                name,
                group,
            }
        }
    }

    impl Drop for TestUser {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.name).status();
            let _ = Command::new("groupdel").arg(&self.group).status();
        }
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| Status::parse(&s).uid.first() == Some(&0))
            .unwrap_or(false)
    }

    #[test]
    fn pre_exec_drop_reaches_the_child_completely() {
        if !is_root() {
            eprintln!("skipped: needs root to create users and change identity");
            return;
        }
        let user = TestUser::create("a");
        // A descriptor without O_CLOEXEC must not reach the child.
        let leaked = std::fs::File::open("/proc/self/status").unwrap();
        let leaked_fd = std::os::fd::AsRawFd::as_raw_fd(&leaked);
        clear_cloexec(leaked_fd);
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            &format!(
                "cat /proc/self/status; echo SID=$(ps -o sid= -p $$); echo PID=$$; umask; \
                 ls /proc/self/fd; test -e /proc/self/fd/{leaked_fd} && echo LEAKED; true"
            ),
        ]);
        drop_before_exec(
            &mut cmd,
            Identity {
                uid: Uid(user.uid),
                gid: Gid(user.gid),
                groups: vec![Gid(user.gid), Gid(user.extra_gid)],
            },
            DropOptions::default(),
        );
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let st = Status::parse(&text);
        assert_eq!(st.uid, [user.uid; 4]);
        assert_eq!(st.gid, [user.gid; 4]);
        let mut groups = st.groups.clone();
        groups.sort_unstable();
        let mut want = vec![user.gid, user.extra_gid];
        want.sort_unstable();
        assert_eq!(groups, want);
        assert_eq!(
            (st.cap_inh, st.cap_prm, st.cap_eff, st.cap_amb),
            (0, 0, 0, 0)
        );
        assert!(st.no_new_privs);
        assert!(text.contains("\n0077\n"), "{text}");
        assert!(!text.contains("LEAKED"), "{text}");
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
        assert_eq!(field("SID="), field("PID="), "a new session: {text}");
        drop(leaked);
    }

    #[test]
    fn packet_pipe_keeps_writes_apart_and_reaches_the_child_at_4() {
        use std::io::{Read, Write};
        let (r, w) = packet_pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"one").unwrap();
        w.write_all(b"two").unwrap();
        let mut r = std::fs::File::from(r);
        let mut buf = [0u8; 4096];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");

        // The write end at 4 in a child (after a drop-like close-on-exec marking when root).
        let (r2, w2) = packet_pipe().unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "printf rec >&4; ls /proc/self/fd"]);
        place_fd_before_exec(&mut cmd, w2, 4);
        let out = cmd.output().unwrap();
        drop(cmd);
        assert!(out.status.success(), "{out:?}");
        let mut r2 = std::fs::File::from(r2);
        let n = r2.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"rec");
        // Every write end is closed now: end of file.
        assert_eq!(r2.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn take_inherited_fd_refuses_closed_and_standard_descriptors() {
        assert!(take_inherited_fd(1).is_err());
        assert!(take_inherited_fd(999_999).is_err());
    }

    /// Clears FD_CLOEXEC on `fd` (test helper; std opens everything close-on-exec).
    fn clear_cloexec(fd: i32) {
        // SAFETY: fcntl(F_SETFD) on a descriptor this test owns; integer arguments only.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        assert_eq!(r, 0);
    }

    /// The middle process of `parent_death_signal_kills_the_orphan`: run by re-executing this
    /// test binary with `GC_SYS_PDEATH_MIDDLE` set; starts a grandchild with the parent-death
    /// signal, prints its pid, and waits to be killed. A no-op in a normal test run.
    #[test]
    fn pdeath_middle() {
        use std::io::Write;
        if std::env::var_os("GC_SYS_PDEATH_MIDDLE").is_none() {
            return;
        }
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("60");
        parent_death_signal_before_exec(&mut cmd, libc::SIGKILL);
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "GRANDCHILD={}", child.id()).unwrap();
        out.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether `pid` is gone or a zombie (dead, not yet reaped by its new parent).
    fn dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    #[test]
    fn parent_death_signal_kills_the_orphan() {
        use std::io::{BufRead, BufReader};
        let exe = std::env::current_exe().unwrap();
        let mut middle = Command::new(exe)
            .args([
                "--exact",
                "tests::pdeath_middle",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("GC_SYS_PDEATH_MIDDLE", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = middle.stdout.take().unwrap();
        let grandchild: u32 = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                // libtest prints "test … ... " on the same line first.
                l.split_once("GRANDCHILD=")
                    .map(|(_, p)| p.trim().parse().unwrap())
            })
            .expect("the middle process reports its child");
        assert!(
            !dead(grandchild),
            "the grandchild runs while its parent lives"
        );
        middle.kill().unwrap();
        middle.wait().unwrap();
        // The kernel delivers SIGKILL at the parent's exit; allow for a loaded machine.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !dead(grandchild) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            dead(grandchild),
            "grandchild {grandchild} outlived its parent"
        );
    }

    #[test]
    fn parent_death_signal_refuses_to_exec_when_the_parent_already_changed() {
        // A parent id that is not ours stands for "the parent died before the prctl": the child
        // signals itself and never runs the program.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exit 0"]);
        parent_death_signal_for(&mut cmd, libc::SIGTERM, libc::c_long::MAX);
        match cmd.status() {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{e}"),
            Ok(st) => {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(st.signal(), Some(libc::SIGTERM), "{st:?}");
            }
        }
    }

    #[test]
    fn failed_drop_fails_the_spawn() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // (uid_t)-1 means "leave unchanged" to setresuid: the process would stay root, so
        // the regain check must catch it and the spawn must fail instead of running as root.
        let mut cmd = Command::new("/bin/true");
        drop_before_exec(
            &mut cmd,
            Identity {
                uid: Uid(u32::MAX),
                gid: Gid(u32::MAX),
                groups: vec![],
            },
            DropOptions::default(),
        );
        assert!(cmd.status().is_err());

        // With exit_on_failure the child says which step failed and exits with its rung.
        let mut cmd = Command::new("/bin/true");
        cmd.stderr(std::process::Stdio::piped());
        drop_before_exec(
            &mut cmd,
            Identity {
                uid: Uid(u32::MAX),
                gid: Gid(u32::MAX),
                groups: vec![],
            },
            DropOptions {
                exit_on_failure: true,
                ..DropOptions::default()
            },
        );
        let out = cmd.output().expect("the spawn itself succeeds");
        assert_eq!(out.status.code(), Some(74), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "privilege drop failed: regain check (errno {})\n",
                libc::EPERM
            )
        );
    }

    #[test]
    fn ladder_exit_codes_follow_the_uid_change_column() {
        let codes: Vec<i32> = [
            Step::Setresgid,
            Step::Setgroups,
            Step::Setresuid,
            Step::DropCapabilities,
            Step::NoNewPrivs,
            Step::RegainCheck,
            Step::Setsid,
            Step::CloseDescriptors,
        ]
        .iter()
        .map(|s| s.ladder_exit_code())
        .collect();
        assert_eq!(codes, [71, 72, 73, 74, 74, 74, 75, 86]);
    }

    #[test]
    fn keep_only_fds_leaves_exactly_the_listed_descriptors() {
        // Two inherited descriptors without close-on-exec at 5 and 6 (e.g. a pipe someone
        // opened without O_CLOEXEC); keep 5, drop 6.
        // High numbers, so they cannot be confused with what `ls` itself opens.
        let null = std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let a = dup_at_least(&null, 50).unwrap();
        let b = dup_at_least(&null, 60).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "ls /proc/self/fd"]);
        let (fa, fb) = (
            std::os::fd::AsRawFd::as_raw_fd(&a),
            std::os::fd::AsRawFd::as_raw_fd(&b),
        );
        clear_cloexec(fa);
        clear_cloexec(fb);
        keep_only_fds_before_exec(&mut cmd, &[fa, 1]);
        let out = cmd.output().unwrap();
        let listed: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(listed.contains(&fa), "{listed:?}");
        assert!(!listed.contains(&fb), "{listed:?}");
        drop((a, b, null));
    }
}
