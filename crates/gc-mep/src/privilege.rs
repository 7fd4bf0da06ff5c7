//! Privilege detection (ENDPOINT §4.1): uid 0, user `root`, or any of the listed Linux
//! capabilities in the effective set.

/// Capability numbers (linux/capability.h) that make a process "privileged": all of 0–40
/// except NET_BROADCAST (11), IPC_LOCK (14), LEASE (28), AUDIT_WRITE (29) and
/// BLOCK_SUSPEND (36).
const PRIVILEGED_CAPS: u64 = {
    let all = (1u64 << 41) - 1;
    all & !(1 << 11) & !(1 << 14) & !(1 << 28) & !(1 << 29) & !(1 << 36)
};

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

fn privileged_from(uid: u32, user_name: Option<&str>, status: &str) -> bool {
    uid == 0
        || user_name == Some("root")
        || effective_caps(status).is_some_and(|caps| caps & PRIVILEGED_CAPS != 0)
}

/// CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, SETGID, SETUID, SETFCAP.
const USER_CHANGE_CAPS: u64 = 0b1_1111 | (1 << 6) | (1 << 7) | (1 << 31);

fn can_change_user_from(uid: u32, user_name: Option<&str>, status: &str) -> bool {
    uid == 0
        || user_name == Some("root")
        || effective_caps(status).is_some_and(|caps| caps & USER_CHANGE_CAPS != 0)
}

/// Whether this process can change user (`user_privs_only=True` upstream): identity mapping
/// is enabled only then.
#[must_use]
pub fn can_change_user() -> bool {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    can_change_user_from(uid.as_raw(), name.as_deref(), &status)
}

/// Whether this process is privileged in upstream's sense.
#[must_use]
pub fn is_privileged() -> bool {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    privileged_from(uid.as_raw(), name.as_deref(), &status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_name_uid_or_capabilities() {
        assert!(privileged_from(0, Some("x"), ""));
        assert!(privileged_from(1000, Some("root"), ""));
        assert!(!privileged_from(
            1000,
            Some("u"),
            "CapEff:\t0000000000000000\n"
        ));
        // NET_BIND_SERVICE (10)
        assert!(privileged_from(
            1000,
            Some("u"),
            "CapEff:\t0000000000000400\n"
        ));
        // NET_BIND_SERVICE is privileged but cannot change user; SETUID (7) can.
        assert!(!can_change_user_from(
            1000,
            Some("u"),
            "CapEff:\t0000000000000400\n"
        ));
        assert!(can_change_user_from(
            1000,
            Some("u"),
            "CapEff:\t0000000000000080\n"
        ));
        assert!(can_change_user_from(0, None, ""));
        // IPC_LOCK (14) alone does not count.
        assert!(!privileged_from(
            1000,
            Some("u"),
            "CapEff:\t0000000000004000\n"
        ));
    }
}
