//! A small filesystem a test can fill up: a tmpfs mounted on a temporary directory.

use std::path::Path;
use std::process::Command;

/// A tmpfs of a given size, unmounted when dropped.
pub struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `bytes` on a new temporary directory; `None`, with the reason
    /// printed, where this process may not mount (not root, or a container that forbids
    /// it), so the calling test can skip rather than fail.
    pub fn mount(bytes: u64) -> Option<SmallFilesystem> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let reason = match mounted {
            Ok(output) if output.status.success() => return Some(SmallFilesystem { dir }),
            Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            Err(error) => format!("mount(8) does not run: {error}"),
        };
        println!(
            "SKIPPED: cannot mount a {bytes}-byte tmpfs to fill up ({reason}); run the tests \
             as root, in a container allowed to mount, to test a full disk"
        );
        None
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes still free on it.
    pub fn free_bytes(&self) -> u64 {
        let stats = rustix::fs::statvfs(self.path()).expect("statvfs of a mounted tmpfs");
        stats.f_bavail * stats.f_frsize
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        // Lazy: whatever still has a file open there lets go when it closes it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
