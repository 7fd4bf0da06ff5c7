//! PAM account and session handling for a user endpoint start (ENDPOINT §4.5, `pam.enable`).
//!
//! [`Session::open`] runs `pam_start` → `pam_acct_mgmt` → `pam_setcred(ESTABLISH)` →
//! `pam_open_session`; [`Session::close`] runs `pam_close_session` → `pam_setcred(DELETE)` →
//! `pam_end`. The conversation answers nothing: no module used for account or session checks
//! should prompt, and one that does gets `PAM_CONV_ERR`.
//!
//! libpam is loaded by the dynamic linker as `libpam.so.0` (no development package needed).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::{self, NonNull};

/// `pam_handle_t` (opaque).
#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

/// `struct pam_message` (never read: the conversation refuses every prompt).
#[repr(C)]
struct PamMessage {
    _private: [u8; 0],
}

/// `struct pam_response` (never produced).
#[repr(C)]
struct PamResponse {
    _private: [u8; 0],
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
#[derive(Debug)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "libpam.so.0", kind = "dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

const PAM_SUCCESS: c_int = 0;
const PAM_CONV_ERR: c_int = 19;
const PAM_ESTABLISH_CRED: c_int = 0x2;
const PAM_DELETE_CRED: c_int = 0x4;
/// Longest user name handed to PAM, bytes (as upstream).
const MAX_USER_LEN: usize = 512;

/// The conversation: refuses every prompt without answering.
unsafe extern "C" fn refuse_conversation(
    _num_msg: c_int,
    _msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    if !resp.is_null() {
        // SAFETY: libpam passes a valid pointer to its response slot when non-null; writing
        // NULL tells it there are no responses to free.
        unsafe { *resp = ptr::null_mut() };
    }
    PAM_CONV_ERR
}

/// The PAM call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `pam_start`.
    Start,
    /// `pam_acct_mgmt`.
    AcctMgmt,
    /// `pam_setcred(PAM_ESTABLISH_CRED)`.
    EstablishCred,
    /// `pam_open_session`.
    OpenSession,
    /// `pam_close_session`.
    CloseSession,
    /// `pam_setcred(PAM_DELETE_CRED)`.
    DeleteCred,
}

/// A PAM failure, shown as upstream logs it:
/// `(error code: 7 [PAM_AUTH_ERR]) Authentication failure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("(error code: {code} [{}]) {message}", constant_name(*.code))]
pub struct PamError {
    /// The call that failed.
    pub call: Call,
    /// The PAM return code.
    pub code: i32,
    /// `pam_strerror` text.
    pub message: String,
}

/// The `PAM_*` name of a Linux-PAM return code.
#[must_use]
pub fn constant_name(code: i32) -> &'static str {
    const NAMES: [&str; 32] = [
        "PAM_SUCCESS",
        "PAM_OPEN_ERR",
        "PAM_SYMBOL_ERR",
        "PAM_SERVICE_ERR",
        "PAM_SYSTEM_ERR",
        "PAM_BUF_ERR",
        "PAM_PERM_DENIED",
        "PAM_AUTH_ERR",
        "PAM_CRED_INSUFFICIENT",
        "PAM_AUTHINFO_UNAVAIL",
        "PAM_USER_UNKNOWN",
        "PAM_MAXTRIES",
        "PAM_NEW_AUTHTOK_REQD",
        "PAM_ACCT_EXPIRED",
        "PAM_SESSION_ERR",
        "PAM_CRED_UNAVAIL",
        "PAM_CRED_EXPIRED",
        "PAM_CRED_ERR",
        "PAM_NO_MODULE_DATA",
        "PAM_CONV_ERR",
        "PAM_AUTHTOK_ERR",
        "PAM_AUTHTOK_RECOVERY_ERR",
        "PAM_AUTHTOK_LOCK_BUSY",
        "PAM_AUTHTOK_DISABLE_AGING",
        "PAM_TRY_AGAIN",
        "PAM_IGNORE",
        "PAM_ABORT",
        "PAM_AUTHTOK_EXPIRED",
        "PAM_MODULE_UNKNOWN",
        "PAM_BAD_ITEM",
        "PAM_CONV_AGAIN",
        "PAM_INCOMPLETE",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("PAM_UNKNOWN")
}

/// An open PAM transaction (and, after [`Session::open`], an open session).
#[derive(Debug)]
pub struct Session {
    handle: NonNull<PamHandle>,
    /// Kept alive for libpam, which may keep a pointer to the conversation.
    _conv: Box<PamConv>,
    session_open: bool,
    last_status: c_int,
}

impl Session {
    /// `pam_start(service, user)`, `pam_acct_mgmt`, `pam_setcred(ESTABLISH)`,
    /// `pam_open_session`. On failure everything opened so far is closed again.
    pub fn open(service: &str, user: &str) -> Result<Session, PamError> {
        let start_err = |message: &str| PamError {
            call: Call::Start,
            code: 4,
            message: message.into(),
        };
        let service = CString::new(service).map_err(|_| start_err("service name has a NUL"))?;
        let mut user = user.as_bytes().to_vec();
        user.truncate(MAX_USER_LEN);
        let user = CString::new(user).map_err(|_| start_err("user name has a NUL"))?;
        let conv = Box::new(PamConv {
            conv: Some(refuse_conversation),
            appdata_ptr: ptr::null_mut(),
        });
        let mut raw: *mut PamHandle = ptr::null_mut();
        // SAFETY: service and user are NUL-terminated strings and conv a valid pam_conv, all
        // alive for the call (conv for the whole session: it is stored in the Session); raw is
        // a valid out-pointer.
        let rc = unsafe {
            pam_start(
                service.as_ptr(),
                user.as_ptr(),
                ptr::from_ref(conv.as_ref()),
                &raw mut raw,
            )
        };
        let Some(handle) = NonNull::new(raw) else {
            return Err(PamError {
                call: Call::Start,
                code: rc,
                message: "pam_start returned no handle".into(),
            });
        };
        let mut session = Session {
            handle,
            _conv: conv,
            session_open: false,
            last_status: rc,
        };
        if rc != PAM_SUCCESS {
            return Err(session.error(Call::Start, rc));
        }
        session.call(Call::AcctMgmt, 0)?;
        session.call(Call::EstablishCred, PAM_ESTABLISH_CRED)?;
        session.call(Call::OpenSession, 0)?;
        session.session_open = true;
        Ok(session)
    }

    /// `pam_setcred(PAM_ESTABLISH_CRED)` again (after the group list was replaced).
    pub fn establish_credentials(&mut self) -> Result<(), PamError> {
        self.call(Call::EstablishCred, PAM_ESTABLISH_CRED)
    }

    /// `pam_close_session`, `pam_setcred(PAM_DELETE_CRED)`, `pam_end`. The first failure is
    /// returned; the handle is released either way.
    pub fn close(mut self) -> Result<(), PamError> {
        self.session_open = false;
        let closed = self.call(Call::CloseSession, 0);
        let deleted = self.call(Call::DeleteCred, PAM_DELETE_CRED);
        closed.and(deleted)
    }

    fn call(&mut self, call: Call, flags: c_int) -> Result<(), PamError> {
        let h = self.handle.as_ptr();
        // SAFETY: h is the live handle from pam_start (released only in Drop); flags are
        // valid for the function called.
        let rc = unsafe {
            match call {
                Call::AcctMgmt => pam_acct_mgmt(h, flags),
                Call::EstablishCred | Call::DeleteCred => pam_setcred(h, flags),
                Call::OpenSession => pam_open_session(h, flags),
                Call::CloseSession => pam_close_session(h, flags),
                Call::Start => PAM_SUCCESS,
            }
        };
        self.last_status = rc;
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            Err(self.error(call, rc))
        }
    }

    fn error(&self, call: Call, code: c_int) -> PamError {
        // SAFETY: the handle is live; pam_strerror returns a pointer to a static or
        // handle-owned NUL-terminated string (or NULL), copied out immediately.
        let text = unsafe {
            let p = pam_strerror(self.handle.as_ptr(), code);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        PamError {
            call,
            code,
            message: text,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.session_open {
            let _ = self.call(Call::CloseSession, 0);
        }
        // SAFETY: the handle is live and released exactly once, here.
        unsafe {
            pam_end(self.handle.as_ptr(), self.last_status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_as_upstream() {
        let e = PamError {
            call: Call::AcctMgmt,
            code: 7,
            message: "Authentication failure".into(),
        };
        assert_eq!(
            e.to_string(),
            "(error code: 7 [PAM_AUTH_ERR]) Authentication failure"
        );
        assert_eq!(constant_name(13), "PAM_ACCT_EXPIRED");
        assert_eq!(constant_name(99), "PAM_UNKNOWN");
    }

    fn root() -> bool {
        crate::Status::current().is_ok_and(|s| s.uid.first() == Some(&0))
    }

    /// A PAM service file under /etc/pam.d, removed on drop.
    struct Service(std::path::PathBuf);

    impl Service {
        fn create(name: &str, text: &str) -> Service {
            let path = std::path::Path::new("/etc/pam.d").join(name);
            std::fs::write(&path, text).unwrap();
            Service(path)
        }
    }

    impl Drop for Service {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn real_pam_allows_root_and_denies_expired_and_unknown() {
        if !root() || !std::path::Path::new("/etc/pam.d").is_dir() {
            eprintln!("skipped: needs root and /etc/pam.d");
            return;
        }
        let name = format!("gcsys-test-{}", std::process::id());
        let _svc = Service::create(
            &name,
            "account required pam_unix.so\nsession required pam_unix.so\n",
        );
        let s = Session::open(&name, "root").expect("root passes pam_unix");
        s.close().unwrap();

        let user = format!("gcsyspam{}", std::process::id() % 100_000);
        let ok = std::process::Command::new("useradd")
            .args(["-M", "-e", "1970-01-02", &user])
            .status()
            .unwrap();
        assert!(ok.success());
        let expired = Session::open(&name, &user);
        let _ = std::process::Command::new("userdel").arg(&user).status();
        let e = expired.unwrap_err();
        assert_eq!((e.call, e.code), (Call::AcctMgmt, 13), "{e}");
        assert!(e.to_string().contains("[PAM_ACCT_EXPIRED]"), "{e}");

        let e = Session::open(&name, "no-such-user-gcsys").unwrap_err();
        assert_eq!(e.call, Call::AcctMgmt);
        assert_eq!(e.code, 10, "{e}");
    }
}
