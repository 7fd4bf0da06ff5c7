//! Privilege detection (ENDPOINT.md §4.1): whether this process counts as "privileged".

/// Effective capabilities that make a process privileged, by Linux capability number.
const PRIVILEGED_CAPS: &[u32] = &[
    30, // AUDIT_CONTROL
    37, // AUDIT_READ
    39, // BPF
    40, // CHECKPOINT_RESTORE
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    2,  // DAC_READ_SEARCH
    3,  // FOWNER
    4,  // FSETID
    15, // IPC_OWNER
    5,  // KILL
    9,  // LINUX_IMMUTABLE
    33, // MAC_ADMIN
    32, // MAC_OVERRIDE
    27, // MKNOD
    12, // NET_ADMIN
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    38, // PERFMON
    6,  // SETGID
    31, // SETFCAP
    8,  // SETPCAP
    7,  // SETUID
    21, // SYS_ADMIN
    22, // SYS_BOOT
    18, // SYS_CHROOT
    16, // SYS_MODULE
    23, // SYS_NICE
    20, // SYS_PACCT
    19, // SYS_PTRACE
    17, // SYS_RAWIO
    24, // SYS_RESOURCE
    25, // SYS_TIME
    26, // SYS_TTY_CONFIG
    34, // SYSLOG
    35, // WAKE_ALARM
];

/// The effective capability set from `/proc/self/status` (`CapEff`), if readable.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// uid 0, or user name `root`, or any privileged capability in the effective set.
pub fn is_privileged() -> bool {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return true;
    }
    let is_root_name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .is_some_and(|u| u.name == "root");
    if is_root_name {
        return true;
    }
    let caps = effective_caps().unwrap_or(0);
    PRIVILEGED_CAPS.iter().any(|&c| caps & (1u64 << c) != 0)
}

/// Whether this system offers what endpoints need (Linux capabilities).
pub fn endpoints_supported() -> bool {
    cfg!(target_os = "linux")
}
