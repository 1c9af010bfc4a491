//! Kernel policies that differ between versions, probed on the running
//! kernel so that a test asserts what the exporter does under the policy
//! it finds, not under the one its author's kernel had.

use badgateway_exporter::netlink::proc_connector::{
    ProcConnector, ProcConnectorError, ProcConnectorOptions,
};

/// Who asks the kernel for the proc connector's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// uid and gid 65534, no capabilities.
    Nobody,
    /// root with every capability but CAP_NET_ADMIN.
    RootWithoutNetAdmin,
}

const CAP_NET_ADMIN: u32 = 12;

/// Whether the running kernel lets `who` subscribe to the proc connector.
/// Linux 6.6 opened the group and `PROC_CN_MCAST_LISTEN` to every user;
/// other kernels (6.18.44 among them) refuse it without CAP_NET_ADMIN.
/// A refusal must be the typed `PermissionDenied`; any other error fails
/// the probe, and the test with it.
pub fn proc_connector_open_to(who: Asker) -> bool {
    let result = std::thread::spawn(move || {
        match who {
            Asker::Nobody => {
                become_nobody();
                assert_eq!(thread_cap_eff(), 0, "nobody has no capabilities");
            }
            Asker::RootWithoutNetAdmin => {
                drop_effective(CAP_NET_ADMIN);
                let eff = thread_cap_eff();
                assert_eq!(
                    eff & (1 << CAP_NET_ADMIN),
                    0,
                    "CAP_NET_ADMIN still effective"
                );
                assert_ne!(eff, 0, "root keeps its other capabilities");
            }
        }
        ProcConnector::open(&ProcConnectorOptions::default()).map(drop)
    })
    .join()
    .expect("probe thread");
    match result {
        Ok(()) => true,
        Err(ProcConnectorError::PermissionDenied { .. }) => false,
        Err(e) => panic!("probing the proc connector's policy as {who:?}: {e}"),
    }
}

/// Make the calling thread uid and gid 65534. Credentials are per thread
/// in Linux, and the raw syscalls change this thread only (glibc's
/// wrappers would change every thread of the test process).
pub fn become_nobody() {
    // SAFETY: setresgid/setresuid of the calling thread.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
        assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
    }
}

/// The calling thread's effective capabilities.
pub fn thread_cap_eff() -> u64 {
    cap_eff_of("/proc/thread-self/status")
}

/// The effective capabilities in a `/proc/.../status` file.
pub fn cap_eff_of(status: &str) -> u64 {
    let text = std::fs::read_to_string(status).unwrap_or_else(|e| panic!("{status}: {e}"));
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// Clear one capability from the calling thread's effective set.
fn drop_effective(cap: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset of the calling thread (pid 0), with the
    // version-3 layout: a header and two data words.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
        d[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        assert_eq!(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()), 0);
    }
}
